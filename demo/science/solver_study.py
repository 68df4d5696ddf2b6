"""Speed levers, each measured for quality before it may be used: `python -m demo.science.solver_study [--per-class 30]`.

A lever that makes sampling cheaper (fewer steps with a second-order solver) is kept only if, at the README's
operating points, the evaluation classifier's accuracy and FID stay within the seed-to-seed noise of the
default (fp32, DDIM, 32 steps). Writes assets/levers.json; the bench and the README quote it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from demo.engine.config import ASSETS_DIR, SamplerConfig
from demo.engine.metrics import evaluate_images, frechet_distance
from demo.engine.pipeline import Models
from demo.science.data import load_mnist
from demo.science.evaluate import sample_all_classes

POINTS = (("unguided", 0.0), ("cfg", 1.0), ("autoguidance", 0.5), ("gfcg", 1.0))
SOLVERS = {"DDIM, 32 steps (default)": SamplerConfig(num_steps=32),
           "DPM-Solver++(2M), 16 steps": SamplerConfig(num_steps=16, sampler="dpmpp_2m"),
           "DDIM, 16 steps": SamplerConfig(num_steps=16)}


def measure(models: Models, per_class: int, seeds: tuple[int, ...]) -> list[dict]:
    held_out = load_mnist("test")[0]
    _, real = evaluate_images(models.eval_classifier, held_out)
    rows = []
    for method, weight in POINTS:
        for name, sampler in SOLVERS.items():
            fids, accuracies, seconds = [], [], []
            for seed in seeds:
                began = time.perf_counter()
                images, labels = sample_all_classes(models, method, weight, per_class, 1000 * seed, sampler)
                seconds.append(time.perf_counter() - began)
                probs, features = evaluate_images(models.eval_classifier, images)
                fids.append(frechet_distance(real, features))
                accuracies.append((probs.argmax(1) == labels).float().mean().item())
            rows.append({"method": method, "w": weight, "solver": name, "fid": statistics.mean(fids),
                         "fid_sd": statistics.stdev(fids), "accuracy": statistics.mean(accuracies),
                         "accuracy_sd": statistics.stdev(accuracies), "seconds": statistics.median(seconds)})
            print(f"{method:13s} w={weight:<4g} {name:28s} FID {rows[-1]['fid']:.3f} ± {rows[-1]['fid_sd']:.3f}  "
                  f"accuracy {rows[-1]['accuracy']:.3f} ± {rows[-1]['accuracy_sd']:.3f}  "
                  f"{rows[-1]['seconds']:.1f} s", flush=True)
    return rows


def verdicts(rows: list[dict]) -> dict[str, bool]:
    """A solver passes if at every point its FID and accuracy are within 2 sd (the larger of the two
    solvers' seed-to-seed sd) of the default's."""
    default = next(iter(SOLVERS))
    out = {}
    for name in list(SOLVERS)[1:]:
        ok = True
        for method, weight in POINTS:
            a = next(r for r in rows if (r["method"], r["w"], r["solver"]) == (method, weight, default))
            b = next(r for r in rows if (r["method"], r["w"], r["solver"]) == (method, weight, name))
            for key in ("fid", "accuracy"):
                noise = 2 * max(a[f"{key}_sd"], b[f"{key}_sd"], 1e-9)
                ok &= abs(a[key] - b[key]) <= noise
        out[name] = ok
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ASSETS_DIR / "levers.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = measure(Models.load(), args.per_class, tuple(range(args.seeds)))
    result = {"per_class": args.per_class, "seeds": args.seeds, "rows": rows, "within_noise": verdicts(rows)}
    print("within noise of the default:", result["within_noise"])
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
