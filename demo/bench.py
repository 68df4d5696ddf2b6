"""How fast, and how close to the machine's limit: `python -m demo.bench [--repeats 7] [--device cpu] [--quick]`.

Prints tables and writes assets/bench.json. Every time is the median of `repeats` runs after a warm-up.
Sections:
  machine      measured fp32 matmul throughput: the achievable peak the networks are compared with
  networks     FLOPs per sample-forward (counted by torch's FlopCounterMode), time per sample, GFLOP/s, % of peak
  methods      each method alone (8 samples x 32 DDIM steps, w = 3): time, ratio to unguided, the ratio its
               network calls predict, and sampler overhead = total time / time inside network calls
  comparison   what the app's Generate does: all 5 methods with trajectories, sampled together, + pictures;
               also the same methods one after another, a w-only change and a trajectory-view change
  peer         the same denoiser driven by diffusers' DDIMScheduler loop (same steps, batch, guidance)
  tried        inference_mode, channels_last, 1 vs 2 threads: measured, kept only where they pay off
  startup      `app.py` in a fresh process: imports, weight loading, UI build, server ready, resident memory
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import explorer as ex
from . import guidance, pipeline, render
from .config import IMAGE_SHAPE, METHODS, NULL_LABEL, SamplerConfig
from .pipeline import Models, Request, generate_final

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):                                # allocations, oneDNN primitive creation
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each function, run round-robin (a, b, c, a, b, c, ...) so that drift in the machine's speed
    (this shared 2-core VM varies by +-20% over minutes) hits every variant alike; compare per-round ratios."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine()) \
        if Path("/proc/cpuinfo").exists() else platform.machine()
    return f"{model}, {torch.get_num_threads()} threads"


def matmul_peak(device: torch.device, repeats: int) -> float:
    """GFLOP/s of a large fp32 matmul: what this device can actually sustain (the 'peak' used below)."""
    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9


@contextlib.contextmanager
def network_timer():
    """Accumulate wall time spent inside network calls (every call goes through Denoise.run / Classify.run)."""
    spent = [0.0]
    originals = guidance.Denoise.run, guidance.Classify.run

    def timed(run):
        def wrapper(*args):
            start = time.perf_counter()
            out = run(*args)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            spent[0] += time.perf_counter() - start
            return out
        return staticmethod(wrapper)

    guidance.Denoise.run, guidance.Classify.run = timed(originals[0]), timed(originals[1])
    try:
        yield spent
    finally:
        guidance.Denoise.run, guidance.Classify.run = (staticmethod(originals[0]), staticmethod(originals[1]))


def with_overhead(fn, repeats: int) -> tuple[float, float]:
    """(median total seconds, median total / time inside network calls)."""
    fn()
    totals, ratios = [], []
    for _ in range(repeats):
        with network_timer() as spent:
            start = time.perf_counter()
            fn()
            total = time.perf_counter() - start
        totals.append(total)
        ratios.append(total / spent[0])
    return statistics.median(totals), statistics.median(ratios)


# ---- networks -------------------------------------------------------------------------------------------

def flops_per_sample(net, classifier: bool = False, backward: bool = False) -> float:
    x = torch.randn(4, *IMAGE_SHAPE, requires_grad=backward)
    with FlopCounterMode(display=False) as counter:
        out = net(x, 1.0) if classifier else net(x, 1.0, torch.full((4,), 3))
        if backward:
            out.log_softmax(1)[:, 3].sum().backward()
    return counter.get_total_flops() / 4


def network_rows(models: Models, peak: float, repeats: int) -> list[dict]:
    rows = []
    for name in ("net", "weak_net", "classifier"):
        net = getattr(models, name)
        is_classifier = name == "classifier"
        flops = flops_per_sample(net, is_classifier)
        for batch in (8, 56):
            x = torch.randn(batch, *IMAGE_SHAPE, device=models.device)
            label = torch.full((batch,), 3, device=models.device)
            with torch.no_grad():
                t = median_seconds(lambda: net(x, 1.0) if is_classifier else net(x, 1.0, label), repeats * 3)
            rows.append({"network": name, "parameters": sum(p.numel() for p in net.parameters()),
                         "mflop_per_sample": flops / 1e6, "batch": batch, "ms_per_sample": 1e3 * t / batch,
                         "gflops": flops * batch / t / 1e9, "fraction_of_peak": flops * batch / t / 1e9 / peak})
    return rows


# ---- methods alone ---------------------------------------------------------------------------------------

def call_times(models: Models, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per call of each network as the methods use it at this batch (for the predicted ratios)."""
    x = torch.randn(batch, *IMAGE_SHAPE, device=models.device)
    x2 = torch.cat([x, x])
    label = torch.full((batch,), 3, device=models.device)
    label2 = torch.cat([label, torch.full_like(label, NULL_LABEL)])
    r = repeats * 3
    with torch.no_grad():
        out = {"net": median_seconds(lambda: models.net(x, 1.0, label), r),
               "net_pair": median_seconds(lambda: models.net(x2, 1.0, label2), r),
               "weak": median_seconds(lambda: models.weak_net(x, 1.0, label), r),
               "classifier": median_seconds(lambda: guidance.Classify.run(models.classifier, x, 1.0, label, False), r)}
    out["classifier_grad"] = median_seconds(lambda: guidance.Classify.run(models.classifier, x, 1.0, label, True), r)
    return out


def method_rows(models: Models, base: Request, repeats: int) -> list[dict]:
    calls = call_times(models, base.num_samples, repeats)
    predicted = {"unguided": calls["net"], "cfg": calls["net_pair"], "autoguidance": calls["net"] + calls["weak"],
                 "classifier": calls["net"] + calls["classifier_grad"],
                 "gfcg": calls["net_pair"] + calls["classifier"]}
    requests = {m: replace(base, method=m) for m in METHODS}
    times = interleaved({m: (lambda r=r: generate_final(models, r)) for m, r in requests.items()}, repeats)
    rows = []
    for method, request in requests.items():
        _, overhead = with_overhead(lambda: generate_final(models, request), max(3, repeats // 2))
        rows.append({"method": method, "nfe_per_sample": ex.nfe(request), "seconds": statistics.median(times[method]),
                     "ratio_to_unguided": ratio(times, method, "unguided"), "sampler_overhead": overhead,
                     "nfe_ratio": ex.nfe(request) / ex.nfe(requests["unguided"]),
                     "predicted_ratio": predicted[method] / predicted["unguided"]})
    return rows


# ---- the app's comparison ---------------------------------------------------------------------------------

def app_comparison(models: Models, base: Request, folder: Path) -> dict:
    """What Generate computes and renders, from an empty cache: 5 methods together + gallery and grid PNGs."""
    explorer = ex.Explorer(models)
    runs = explorer.compare(base)
    for run in runs.values():
        for image, _ in ex.gallery(run):
            render.save_png(image, folder)
    render.save_png(ex.comparison_grid(runs, base), folder)
    ex.summary(runs)
    return runs


def comparison_rows(models: Models, base: Request, repeats: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="guidance_lab_bench_"))
    times = interleaved({"together": lambda: app_comparison(models, base, folder),
                         "one_after_another": lambda: [ex.run_method(models, replace(base, method=m))
                                                       for m in METHODS]}, repeats)
    out = {"together_seconds": statistics.median(times["together"]),
           "one_after_another_seconds": statistics.median(times["one_after_another"]),
           "together_min_seconds": min(times["together"]), "together_max_seconds": max(times["together"]),
           "together_speedup": ratio(times, "one_after_another", "together")}
    _, out["together_overhead"] = with_overhead(lambda: app_comparison(models, base, folder), max(3, repeats // 2))
    explorer = ex.Explorer(models)
    runs = explorer.compare(base)

    def change_w():
        explorer.cache.clear()
        explorer.cache[ex.cache_key(replace(base, method="unguided"))] = runs["unguided"]
        explorer.compare(replace(base, weight=base.weight + 1))
    out["w_change_seconds"] = median_seconds(change_w, repeats)

    def view():
        before = explorer.runs_computed
        ex.animation(runs, 1), ex.step_plots(runs, 1), ex.filmstrip(runs, 1)
        assert explorer.runs_computed == before
    out["trajectory_view_seconds"] = median_seconds(view, repeats)
    import matplotlib.pyplot as plt
    plt.close("all")
    return out


# ---- the peer: diffusers' DDIM loop -----------------------------------------------------------------------

def diffusers_loop(models: Models, request: Request):
    """The standard diffusers pipeline loop (DDIMScheduler, eps prediction, CFG by a doubled batch) around
    the same denoiser. Our D(x; sigma) is wrapped as eps(x_vp, t): sigma_t^2 = (1 - abar_t) / abar_t,
    x = x_vp / sqrt(abar_t), eps = (x - D) / sigma_t. Returns a function that samples once."""
    from diffusers import DDIMScheduler
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    label = torch.full((request.num_samples,), request.label, device=models.device)
    label2 = torch.cat([label, torch.full_like(label, NULL_LABEL)])
    scale = 1 + request.weight                          # diffusers' guidance_scale = 1 + w (our convention)
    cfg = request.method == "cfg"

    @torch.no_grad()
    def run():
        scheduler.set_timesteps(request.sampler.num_steps)
        generator = torch.Generator().manual_seed(request.seed)
        x = torch.randn(request.num_samples, *IMAGE_SHAPE, generator=generator).to(models.device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            abar = scheduler.alphas_cumprod[t].item()
            sigma = math.sqrt((1 - abar) / abar)
            x_ve = scheduler.scale_model_input(x, t) / math.sqrt(abar)
            if cfg:
                cond, uncond = models.net(torch.cat([x_ve, x_ve]), sigma, label2).chunk(2)
                denoised = uncond + scale * (cond - uncond)
            else:
                denoised = models.net(x_ve, sigma, label)
            x = scheduler.step((x_ve - denoised) / sigma, t, x).prev_sample
        return x
    return run


def peer_rows(models: Models, base: Request, repeats: int) -> list[dict] | str:
    try:
        import diffusers
    except ImportError:
        return "diffusers is not installed (pip install diffusers) - peer baseline skipped"
    rows = []
    for method in ("unguided", "cfg"):
        request = replace(base, method=method)
        times = interleaved({"ours": lambda: generate_final(models, request),
                             "diffusers": diffusers_loop(models, request)}, repeats * 2)
        rows.append({"method": method, "ours_seconds": statistics.median(times["ours"]),
                     "diffusers_seconds": statistics.median(times["diffusers"]), "ratio": ratio(times, "ours", "diffusers"),
                     "diffusers": diffusers.__version__})
    return rows


# ---- things tried -------------------------------------------------------------------------------------------

def tried_rows(models: Models, base: Request, repeats: int) -> list[dict]:
    """Each candidate against the shipped setting, interleaved; speed-up = median per-round ratio."""
    rows = []

    def autograd_off(mode):
        def run():
            pipeline.NO_AUTOGRAD = mode
            ex.Explorer(models).compare(base)
            pipeline.NO_AUTOGRAD = torch.inference_mode
        return run
    times = interleaved({"before": autograd_off(torch.no_grad), "after": autograd_off(torch.inference_mode)},
                        repeats)
    rows.append(("torch.inference_mode instead of no_grad (comparison)", times))
    nets = (models.net, models.weak_net, models.classifier)

    def layout(fmt):
        def run():
            for net in nets:
                net.to(memory_format=fmt)
            ex.Explorer(models).compare(base)
        return run
    times = interleaved({"before": layout(torch.contiguous_format), "after": layout(torch.channels_last)}, repeats)
    layout(torch.contiguous_format)
    rows.append(("channels_last weights (comparison)", times))
    if models.device.type == "cpu" and torch.get_num_threads() > 1:
        threads = torch.get_num_threads()

        def with_threads(n):
            def run():
                torch.set_num_threads(n)
                ex.Explorer(models).compare(base)
                torch.set_num_threads(threads)
            return run
        times = interleaved({"before": with_threads(threads), "after": with_threads(1)}, repeats)
        rows.append((f"1 thread instead of {threads} (comparison)", times))
    times = interleaved({"before": lambda: ex.Explorer(models).compare(base),
                         "after": lambda: [ex.run_method(models, replace(base, method=m)) for m in METHODS]}, repeats)
    rows.append(("methods one after another, not together (comparison)", times))
    return [{"change": change, "baseline_seconds": statistics.median(t["before"]),
             "seconds": statistics.median(t["after"]), "speedup": ratio(t, "before", "after")} for change, t in rows]


# ---- start-up -----------------------------------------------------------------------------------------------

STARTUP = textwrap.dedent('''
    import json, os, sys, time
    t0 = time.perf_counter()
    import app
    from demo import explorer as ex
    from demo.pipeline import Models, Request
    t1 = time.perf_counter()
    from demo.compute import COMPUTE                  # as app.main: all torch work on one thread
    app.EXPLORER = ex.Explorer(COMPUTE.call(Models.load))
    t2 = time.perf_counter()
    blocks = app.serve("127.0.0.1", int(sys.argv[1]), block=False)
    t3 = time.perf_counter()
    COMPUTE.call(app.EXPLORER.compare, Request(label=3))
    t4 = time.perf_counter()
    COMPUTE.call(app.EXPLORER.compare, Request(label=3, seed=1))
    t5 = time.perf_counter()
    http = []
    try:                                   # the whole round trip through Gradio (queue, events, PNG files)
        from gradio_client import Client
        client = Client(f"http://127.0.0.1:{sys.argv[1]}/", verbose=False, download_files=False)   # as a browser: no re-downloads
        for seed in range(2, 9):
            start = time.perf_counter()
            client.predict(3, 3.0, 32, "ddim", 8, seed, 0.0, 80.0, api_name="/compare")
            http.append(time.perf_counter() - start)
    except ImportError:
        pass
    rss = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:")) \\
        if os.path.exists("/proc/self/status") else float("nan")
    blocks.close()
    print(json.dumps({"imports_seconds": t1 - t0, "weights_seconds": t2 - t1, "ui_and_server_seconds": t3 - t2,
                      "ready_after_imports_seconds": t3 - t1, "first_comparison_seconds": t4 - t3,
                      "second_comparison_seconds": t5 - t4, "rss_mb_after_a_comparison": rss,
                      "app_http_comparison_seconds": sorted(http)[len(http) // 2] if http else float("nan")}))
''')


def startup(repeats: int) -> dict:
    import socket
    results = []
    for _ in range(repeats):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-c", STARTUP, str(port)], cwd=ROOT, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        if out.returncode != 0:
            return {"error": out.stderr[-2000:]}
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


# ---- report ---------------------------------------------------------------------------------------------------

def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format)."""
    widths = [max(len(h), 10) for _, h, _ in columns]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths))]
    for row in rows:
        lines.append("  ".join(format(row[k], f).rjust(w) for (k, _, f), w in zip(columns, widths)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--weight", type=float, default=3.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="3 repeats, no start-up measurement")
    parser.add_argument("--out", type=Path, default=ASSETS / "bench.json")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    device = torch.device(args.device)
    models = Models.load(device=device)
    base = Request(label=3, weight=args.weight, num_samples=args.samples, seed=0,
                   sampler=SamplerConfig(num_steps=args.steps))
    report = {"device": device_name(device), "torch": torch.__version__, "samples": args.samples,
              "steps": args.steps, "weight": args.weight, "repeats": repeats}
    print(f"device: {report['device']}; torch {torch.__version__}; {args.samples} samples x {args.steps} DDIM "
          f"steps, w = {args.weight:g}; medians of {repeats}\n")

    report["matmul_peak_gflops"] = peak = matmul_peak(device, repeats)
    print(f"machine: fp32 matmul 2048^3 sustains {peak:.0f} GFLOP/s (the 'peak' below)\n")

    report["networks"] = rows = network_rows(models, peak, repeats)
    print("networks (forward, no grad):")
    print(table(rows, [("network", "network", ""), ("parameters", "params", "d"), ("mflop_per_sample", "MFLOP/sample",
                       ".1f"), ("batch", "batch", "d"), ("ms_per_sample", "ms/sample", ".3f"), ("gflops", "GFLOP/s",
                       ".0f"), ("fraction_of_peak", "of peak", ".0%")]) + "\n")

    report["methods"] = rows = method_rows(models, base, repeats)
    print("each method alone (final samples only):")
    print(table(rows, [("method", "method", ""), ("nfe_per_sample", "NFE/sample", "d"), ("seconds", "time (s)", ".3f"),
                       ("ratio_to_unguided", "x unguided", ".2f"), ("nfe_ratio", "NFE ratio", ".2f"),
                       ("predicted_ratio", "x predicted", ".2f"),
                       ("sampler_overhead", "total/network", ".2f")]) + "\n")

    report["comparison"] = c = comparison_rows(models, base, repeats)
    print(f"the app's comparison (5 methods x {args.samples} samples x {args.steps} steps, trajectories, pictures):")
    print(f"  all methods sampled together   {c['together_seconds']:.3f} s   (total/network {c['together_overhead']:.2f}; "
          f"range {c['together_min_seconds']:.2f}-{c['together_max_seconds']:.2f} s)")
    print(f"  one method after another       {c['one_after_another_seconds']:.3f} s   "
          f"(together is {c['together_speedup']:.2f}x faster, median per-round ratio)")
    print(f"  change only w (unguided cached) {c['w_change_seconds']:.3f} s")
    print(f"  change only the viewed sample  {c['trajectory_view_seconds']:.3f} s (recomputes nothing: GIF, plots)\n")

    report["peer"] = rows = peer_rows(models, base, repeats)
    print("peer baseline: the same denoiser in diffusers' DDIMScheduler loop, same steps and batch:")
    print(rows if isinstance(rows, str) else table(rows, [("method", "method", ""), ("ours_seconds", "ours (s)", ".3f"),
                                                          ("diffusers_seconds", "diffusers (s)", ".3f"),
                                                          ("ratio", "ours/peer", ".2f")]))
    print()
    report["tried"] = rows = tried_rows(models, base, repeats)
    print("tried:")
    print(table(rows, [("change", "change", "<52"), ("baseline_seconds", "before (s)", ".3f"),
                       ("seconds", "after (s)", ".3f"), ("speedup", "speed-up", ".2f")]) + "\n")

    if not args.quick and device.type == "cpu":
        report["startup"] = s = startup(3)
        print("start-up of app.py in a fresh process (median of 3):")
        print("  " + ("\n  ".join(f"{k:32s} {v:.2f}" for k, v in s.items()) if "error" not in s else s["error"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
