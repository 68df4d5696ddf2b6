"""How fast, and how close to the machine's limit: `python -m demo.bench [--repeats 7] [--device cpu] [--quick]
[--out assets/bench.json]`.

Prints tables and writes --out (assets/bench.json) (the measurements are in demo/benchmarks.py). Every time is the
median of `repeats` runs after a warm-up.
Sections:
  machine      measured fp32 matmul throughput: the achievable peak the networks are compared with
  networks     FLOPs per sample-forward (counted by torch's FlopCounterMode), time per sample, GFLOP/s, % of peak
  methods      each method alone (8 samples x 32 DDIM steps, w = 3): time, ratio to unguided, the ratio its
               network calls predict, and sampler overhead = total time / time inside network calls
  comparison   what the app's Generate does: all 6 methods (unguided + 5 guided) with trajectories, sampled
               together, + pictures;
               also the same methods one after another, a w-only change and a trajectory-view change
  peer         the same denoiser driven by diffusers' DDIMScheduler loop (same steps, batch, guidance)
  tried        inference_mode, channels_last, 1 vs 2 threads: measured, kept only where they pay off
  startup      `app.py` in a fresh process: imports, weight loading, UI build, server ready, resident memory
  classroom    30 gradio_client students press Generate at once against a real server: latency p50/p95/max,
               throughput, fraction of the FLOP floor, one request's time split, equality with each made alone
               (`--classroom N` sets the class size, 0 skips it; `--only-classroom` runs only this section)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import torch

from demo.engine.config import IMAGE_SHAPE, NULL_LABEL, ROOT, SamplerConfig
from demo.engine.guidance import METHODS
from demo.engine.pipeline import Models, Request, generate_final
from demo.tools import classroom as loadtest
from demo.tools.benchmarks import (
    comparison_rows,
    device_name,
    interleaved,
    matmul_peak,
    method_rows,
    network_rows,
    ratio,
    tried_rows,
)

ASSETS = ROOT / "assets"


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


# ---- start-up -----------------------------------------------------------------------------------------------

STARTUP = textwrap.dedent('''
    import functools, json, os, shutil, sys, time
    t0 = time.perf_counter()
    import app
    from demo.serving import server
    from demo.tools import launcher
    t1 = time.perf_counter()
    port, label, weight, num_samples, num_steps, calls = sys.argv[1:]
    done = {}

    def timed(name, fn):                   # when each part of server.start finished
        @functools.wraps(fn)
        def part(*args, **kwargs):
            out = fn(*args, **kwargs)
            done[name] = time.perf_counter()
            return out
        return part
    parts = server.AppParts(serve=timed("serve", app.serve), prepare=timed("prepare", app.prepare),
                            attach=timed("attach", app.attach))
    blocks, root = server.start(parts, ["--port", port], os.environ)     # exactly what `python app.py` does
    http = []                              # the whole round trip through Gradio (queue, events, PNG files)
    client = launcher.client(f"http://127.0.0.1:{port}/")   # download_files=False, as a browser: no re-downloads
    for seed in range(int(calls)):
        start = time.perf_counter()
        launcher.call(client, launcher.compare_kwargs(int(label), 1 + seed, float(weight), int(num_samples),
                                                      int(num_steps)))
        http.append(time.perf_counter() - start)
    rss = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:")) \\
        if os.path.exists("/proc/self/status") else float("nan")
    blocks.close()
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"imports_seconds": t1 - t0, "weights_seconds": done["attach"] - t1,
                      "first_comparison_seconds": done["prepare"] - done["attach"],
                      "ui_and_server_seconds": done["serve"] - done["prepare"],
                      "ready_after_imports_seconds": done["serve"] - t1, "rss_mb_after_comparisons": rss,
                      "app_http_comparison_seconds": sorted(http)[len(http) // 2]}))
''')


def startup(repeats: int, label: int = 3, weight: float = 3.0, num_samples: int = 8, num_steps: int = 32,
            calls: int = 7) -> dict:
    """`python app.py`'s start-up (server.start, in a fresh process: check, weights, the default comparison
    sampled before the first visitor, UI and server), then `calls` comparisons over HTTP; medians of `repeats`.
    {"error": ...} if the process failed."""
    from demo.tools.launcher import free_port
    results = []
    for _ in range(repeats):
        argv = [str(free_port()), str(label), str(weight), str(num_samples), str(num_steps), str(calls)]
        out = subprocess.run([sys.executable, "-c", STARTUP, *argv], cwd=ROOT, capture_output=True, text=True,
                             timeout=600, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
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


def classroom_section(args, peak: float | None = None, ladder_values: tuple[str, ...] = loadtest.LADDER_CHECKS
                      ) -> dict:
    c = loadtest.report(args.classroom, args.samples, args.steps, 2.0, peak, ladder_values=ladder_values)
    r = c["one_request"]
    print(f"classroom: {c['clients']} students press Generate at once ({c['students']}):")
    print(f"  latency p50 {c['p50_seconds']:.1f} s, p95 {c['p95_seconds']:.1f} s, max {c['max_seconds']:.1f} s; "
          f"{len(c['errors'])} errors; throughput {c['throughput_per_second']:.2f} comparisons/s")
    print(f"  FLOP floor {c['flop_floor_seconds']:.1f} s at the measured peak: the class took "
          f"{c['fraction_of_flop_floor']:.0%} of the best possible")
    print(f"  one request: sampling {r['sampling_seconds']:.2f} s, rendering {r['rendering_seconds']:.3f} s, "
          f"Gradio {r['gradio_seconds']:.3f} s (cached round trip {r['cached_round_trip_seconds']:.3f} s)")
    v = c["view"]
    if "error" not in v:
        print(f"  one visitor alone, in chromium at 1024x768: first result {v['first_result_seconds']:.2f} s after "
              f"opening the page; w ladder filled {v['ladder_fill_seconds']:.1f} s later; a w change on the "
              f"ladder {1e3 * v['w_change_seconds']:.0f} ms (median, browser to picture)")
    e = c["equality"]
    print(f"  equality with each made alone: {e['compared']}/{e['of']} compared, "
          f"{e['identical_fraction']:.2%} of pixels identical, max difference {e['max_grey_levels']} grey level(s)")
    return c


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, help="runs per median (default 7; 3 with --quick)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--weight", type=float, default=3.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="3 repeats, no start-up and no classroom unless "
                        "--classroom is given")
    parser.add_argument("--out", type=Path, default=ASSETS / "bench.json")
    parser.add_argument("--classroom", type=int, help="students at once (default 30, 0 with --quick; 0 skips it)")
    parser.add_argument("--only-classroom", action="store_true", help="run only the classroom section "
                        "(other sections of --out are kept)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 7)
    if args.classroom is None:
        args.classroom = 0 if args.quick and not args.only_classroom else 30
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.only_classroom:
        report = json.loads(args.out.read_text()) if args.out.exists() else {}
        report["classroom"] = classroom_section(args)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten: {args.out}")
        return
    repeats = args.repeats
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
    print(f"the app's comparison ({len(METHODS)} methods x {args.samples} samples x {args.steps} steps, "
          f"trajectories, pictures):")
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
        report["startup"] = s = startup(3, 3, args.weight, args.samples, args.steps)
        print("start-up of app.py in a fresh process (median of 3):")
        print("  " + ("\n  ".join(f"{k:32s} {v:.2f}" for k, v in s.items()) if "error" not in s else s["error"]))
    if args.classroom and device.type == "cpu":
        report["classroom"] = classroom_section(args, peak)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {args.out}")
    if "error" in report.get("startup", {}):
        raise SystemExit("bench: the start-up section failed (its error is above and in the report)")


if __name__ == "__main__":
    main()
