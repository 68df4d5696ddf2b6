"""The measuring tools of `python -m demo.bench` and its detail sections (networks, methods alone, things tried).
Every time is a median after a warm-up; variants that are compared run interleaved (a, b, a, b, ...) so that
drift in the machine's speed hits both alike, and ratios are medians of per-round ratios.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib.util
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from demo.engine import batching
from demo.engine.config import IMAGE_SHAPE, NULL_LABEL, ROOT
from demo.engine.pipeline import Models, Request, generate_final, generate_together


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):                                # allocations, oneDNN primitive creation
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each function, run round-robin after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")), platform.machine()) if cpuinfo.exists() else platform.machine()
    return f"{model}, {torch.get_num_threads()} threads"


def installed(name: str) -> bool:
    """Whether `name` can be imported here (without importing it; a module set to None in sys.modules is not)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def machine(device: torch.device) -> dict:
    """What ran the bench: the device, the CPU, threads, library versions, the commit and the date."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "--short", "HEAD") or None
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    cpuinfo = Path("/proc/cpuinfo")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), []) if cpuinfo.exists() else []
    return {"device": device_name(device), "device_type": device.type, "cpu": device_name(torch.device("cpu")),
            "cpu_vector_units": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags],
            "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None, "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def matmul_peak(device: torch.device, repeats: int) -> float:
    """GFLOP/s of a large fp32 matmul: what this device can actually sustain (the 'peak' below)."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9


@contextlib.contextmanager
def network_timer(models: Models):
    """Accumulate wall time spent inside network calls: the denoisers' forwards (hooks) and every classifier
    call (batching.classify, forward and, for classifier guidance, backward). (The bench's class and comparison
    sections use demo/tools/timing.py, which also counts the evaluation classifier.)"""
    spent, started = [0.0], {}

    def before(module, args):
        started[id(module)] = time.perf_counter()

    def after(module, args, output):
        synchronize()
        spent[0] += time.perf_counter() - started.pop(id(module))

    original = batching.classify

    def classify(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        synchronize()
        spent[0] += time.perf_counter() - start
        return out

    handles = [h for net in (models.net, models.weak_net)
               for h in (net.register_forward_pre_hook(before), net.register_forward_hook(after))]
    batching.classify = classify
    try:
        yield spent
    finally:
        batching.classify = original
        for handle in handles:
            handle.remove()


def with_overhead(models: Models, fn, repeats: int) -> tuple[float, float]:
    """(median total seconds, median total / time inside network calls)."""
    fn()
    totals, ratios = [], []
    for _ in range(repeats):
        with network_timer(models) as spent:
            start = time.perf_counter()
            fn()
            total = time.perf_counter() - start
        totals.append(total)
        ratios.append(total / spent[0])
    return statistics.median(totals), statistics.median(ratios)


@contextlib.contextmanager
def memory_format(nets, fmt: torch.memory_format):
    """Networks in memory format `fmt` for the duration, then back to the default (contiguous) layout."""
    for net in nets:
        net.to(memory_format=fmt)
    try:
        yield
    finally:
        for net in nets:
            net.to(memory_format=torch.contiguous_format)


# ---- networks -------------------------------------------------------------------------------------------

def flops_per_sample(net, classifier: bool = False) -> float:
    device = next(net.parameters()).device
    x = torch.randn(4, *IMAGE_SHAPE, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x, 1.0) if classifier else net(x, 1.0, torch.full((4,), 3, device=device))
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
               "classifier": median_seconds(lambda: batching.classify(models.classifier, x, 1.0, label, False), r)}
    out["classifier_grad"] = median_seconds(lambda: batching.classify(models.classifier, x, 1.0, label, True), r)
    return out


def method_rows(models: Models, requests: list[Request], repeats: int) -> list[dict]:
    """Each method of a comparison alone (final samples only, at its own w): time, ratio to unguided, and the
    ratio its network calls predict."""
    calls = call_times(models, requests[0].num_samples, repeats)
    predicted = {"unguided": calls["net"], "cfg": calls["net_pair"], "autoguidance": calls["net"] + calls["weak"],
                 "classifier": calls["net"] + calls["classifier_grad"],
                 "gfcg": calls["net_pair"] + calls["classifier"],
                 "gfcg_ag": calls["net"] + calls["weak"] + calls["classifier"]}
    requests = {r.method: r for r in requests}
    times = interleaved({m: (lambda r=r: generate_final(models, r)) for m, r in requests.items()}, repeats)
    rows = []
    for method, request in requests.items():
        _, overhead = with_overhead(models, lambda: generate_final(models, request), max(3, repeats // 2))
        rows.append({"method": method, "nfe_per_sample": request.nfe, "seconds": statistics.median(times[method]),
                     "ratio_to_unguided": ratio(times, method, "unguided"), "sampler_overhead": overhead,
                     "nfe_ratio": request.nfe / requests["unguided"].nfe,
                     "predicted_ratio": predicted.get(method, math.nan) / predicted["unguided"]})
    return rows


# ---- things tried -------------------------------------------------------------------------------------------

def tried_rows(models: Models, requests: list[Request], repeats: int) -> list[dict]:
    """Each candidate against the shipped setting (a comparison's requests sampled together), interleaved;
    speed-up = median per-round ratio."""
    rows = []

    def together(no_autograd=torch.inference_mode):
        return lambda: list(generate_together(models, requests, no_autograd=no_autograd))
    times = interleaved({"before": together(torch.no_grad), "after": together()}, repeats)
    rows.append(("torch.inference_mode instead of no_grad (comparison)", times))

    def channels_last():
        with memory_format((models.net, models.weak_net, models.classifier), torch.channels_last):
            together()()
    times = interleaved({"before": together(), "after": channels_last}, repeats)
    rows.append(("channels_last weights (comparison)", times))
    if models.device.type == "cpu" and torch.get_num_threads() > 1:
        threads = torch.get_num_threads()

        def one_thread():
            torch.set_num_threads(1)
            try:
                together()()
            finally:
                torch.set_num_threads(threads)
        times = interleaved({"before": together(), "after": one_thread}, repeats)
        rows.append((f"1 thread instead of {threads} (comparison)", times))
    times = interleaved({"before": together(),
                         "after": lambda: [list(generate_together(models, [r])) for r in requests]}, repeats)
    rows.append(("methods one after another, not together (comparison)", times))
    return [{"change": change, "baseline_seconds": statistics.median(t["before"]),
             "seconds": statistics.median(t["after"]), "speedup": ratio(t, "before", "after")} for change, t in rows]
