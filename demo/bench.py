"""Speed of every guidance method on this machine: `python -m demo.bench [--repeats 7] [--device cpu]`.

Prints, per method, the median wall time of 8 samples x 32 DDIM steps (trajectory recording off and on),
NFE per sample, and the ratio to unguided; writes the same table as JSON under assets/.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from .config import METHODS, SamplerConfig
from .explorer import nfe, run_method
from .pipeline import Models, Request, generate_final

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def median_seconds(fn, repeats: int) -> float:
    fn()                                                   # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--weight", type=float, default=3.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ASSETS / "bench.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    models = Models.load(device=device)
    base = Request(label=3, weight=args.weight, num_samples=args.samples, seed=0,
                   sampler=SamplerConfig(num_steps=args.steps))
    rows = []
    for method in METHODS:
        request = replace(base, method=method)
        final_s = median_seconds(lambda: generate_final(models, request), args.repeats)
        recorded_s = median_seconds(lambda: run_method(models, request), args.repeats)
        rows.append({"method": method, "nfe_per_sample": nfe(request), "seconds": final_s,
                     "seconds_with_trajectory": recorded_s})
    unguided = rows[0]["seconds"]
    comparison = sum(r["seconds_with_trajectory"] for r in rows)
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.samples} samples x {args.steps} DDIM "
          f"steps, w = {args.weight:g}, median of {args.repeats}")
    print(f"{'method':<14}{'NFE/sample':>11}{'time (s)':>10}{'x unguided':>12}{'with trajectory (s)':>21}")
    for r in rows:
        r["ratio_to_unguided"] = r["seconds"] / unguided
        print(f"{r['method']:<14}{r['nfe_per_sample']:>11}{r['seconds']:>10.3f}{r['ratio_to_unguided']:>12.2f}"
              f"{r['seconds_with_trajectory']:>21.3f}")
    print(f"full comparison (5 methods, trajectories recorded, sequential): {comparison:.3f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device_name(device), "torch": torch.__version__,
                                    "samples": args.samples, "steps": args.steps, "weight": args.weight,
                                    "repeats": args.repeats, "methods": rows,
                                    "full_comparison_seconds": comparison}, indent=2) + "\n")


if __name__ == "__main__":
    main()
