"""Measured guidance trade-offs: `python -m demo.evaluate [--quick]`.

Sweeps w for every method on the shipped model and measures, with the separate evaluation classifier only:
class accuracy, mean target confidence, FID (classifier features) and precision/recall against the 500 held-out
real digits, within-class diversity, NFE and wall time per sample; and, for classifier guidance, the guiding
classifier's own confidence next to the evaluation accuracy. Writes assets/evaluation.{json,csv} and plots.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from torch import Tensor

from . import render
from .config import NUM_CLASSES, Interval, SamplerConfig
from .data import load_mnist
from .guidance import GUIDANCE, METHODS
from .metrics import evaluate_images, frechet_distance, mean_pairwise_distance, precision_recall
from .pipeline import Models, Request, sample_labels
from .sampling import final

ASSETS = Path(__file__).resolve().parent.parent / "assets"
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)

# The classifier-guidance weight whose accuracy README and tests quote (w multiplies grad log p, guided-diffusion
# `classifier_scale`); CG needs a larger w than CFG for the same effect because a small noisy classifier's
# gradients are weak at high noise.
DOCUMENTED_CG_WEIGHT = 3.0


def sample_all_classes(models: Models, method: str, weight: float, per_class: int, seed: int = 0,
                       sampler: SamplerConfig = SamplerConfig(), interval: Interval = Interval(),
                       batch_size: int = 250) -> tuple[Tensor, Tensor]:
    """per_class samples of every class: images (N, 1, 28, 28) and their target labels (N,)."""
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    images = [final(sample_labels(models, method, weight, labels[i:i + batch_size], seed + i, sampler, interval,
                                  record=False)).cpu() for i in range(0, len(labels), batch_size)]
    return torch.cat(images), labels


def class_accuracy(models: Models, images: Tensor, labels: Tensor) -> float:
    probs, _ = evaluate_images(models.eval_classifier, images)
    return (probs.argmax(1) == labels).float().mean().item()


def evaluate_one(models: Models, method: str, weight: float, per_class: int, seed: int, sampler: SamplerConfig,
                 real_features: Tensor) -> dict:
    start = time.perf_counter()
    images, labels = sample_all_classes(models, method, weight, per_class, seed, sampler)
    seconds = time.perf_counter() - start
    probs, feats = evaluate_images(models.eval_classifier, images)
    precision, recall = precision_recall(real_features, feats)
    with torch.no_grad():                                   # the guiding classifier at its lowest noise level
        guide = models.classifier(images.to(models.device), sampler.sigma_min).softmax(1).cpu()
    diversity = [mean_pairwise_distance(feats[labels == c]) for c in range(NUM_CLASSES)]
    request = Request(label=0, method=method, weight=weight, sampler=sampler)
    return {"method": method, "w": weight, "samples": len(images),
            "accuracy": (probs.argmax(1) == labels).float().mean().item(),
            "confidence": probs.gather(1, labels[:, None]).mean().item(),
            "guiding_classifier_confidence": guide.gather(1, labels[:, None]).mean().item(),
            "fid_classifier_features": frechet_distance(real_features, feats),
            "precision": precision, "recall": recall, "diversity": sum(diversity) / NUM_CLASSES,
            "nfe_per_sample": request.nfe, "seconds_per_sample": seconds / len(images)}


def plots(rows: list[dict], out: Path, suffix: str) -> list[Path]:
    by_method = {m: [r for r in rows if r["method"] in (m, "unguided")] for m in METHODS[1:]}
    by_method = {m: sorted(rs, key=lambda r: r["w"]) for m, rs in by_method.items()}

    def series(key):
        return {m: ([r["w"] for r in rs], [r[key] for r in rs]) for m, rs in by_method.items()}

    colours = {m: GUIDANCE[m].colour for m in METHODS} | {"evaluation accuracy": "#111827",
                                                           "guiding classifier p(c|x)": GUIDANCE["classifier"].colour}

    figures = {
        "accuracy": render.method_lines(series("accuracy"), "guidance weight w", "accuracy (evaluation classifier)",
                                        "Class accuracy vs w", colours, logx=True),
        "fid": render.method_lines(series("fid_classifier_features"), "guidance weight w",
                                   "FID (classifier features)", "FID vs w (lower is better)", colours, logx=True, logy=True),
        "precision_recall": render.method_lines(
            {m: ([r["recall"] for r in rs], [r["precision"] for r in rs]) for m, rs in by_method.items()},
            "recall", "precision", "Precision-recall as w grows", colours),
        "classifier_fooling": render.method_lines(
            {"guiding classifier p(c|x)": series("guiding_classifier_confidence")["classifier"],
             "evaluation accuracy": series("accuracy")["classifier"]},
            "guidance weight w", "value", "Classifier guidance: guide's confidence vs evaluation", colours,
            logx=True),
    }
    paths = []
    for name, fig in figures.items():
        path = out / f"evaluation_{name}{suffix}.png"
        fig.savefig(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny run for tests (< 60 s on a 2-core CPU)")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    per_class, steps, weights = (2, 4, (0.0, 1.0, 4.0)) if args.quick else (args.per_class, args.steps, WEIGHTS)
    suffix = "_quick" if args.quick else ""
    models = Models.load(device=args.device)
    sampler = SamplerConfig(num_steps=steps)
    real, _ = load_mnist("test")
    _, real_features = evaluate_images(models.eval_classifier, real)
    rows = [evaluate_one(models, "unguided", 0.0, per_class, args.seed, sampler, real_features)]
    for method in METHODS[1:]:
        for weight in weights[1:]:
            rows.append(evaluate_one(models, method, weight, per_class, args.seed, sampler, real_features))
            r = rows[-1]
            print(f"{method:<13} w={weight:<5g} acc {r['accuracy']:.3f} FID {r['fid_classifier_features']:7.2f} "
                  f"P {r['precision']:.2f} R {r['recall']:.2f} div {r['diversity']:.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"per_class": per_class, "samples_per_point": per_class * NUM_CLASSES, "steps": steps,
            "sampler": "ddim", "seed": args.seed, "real_reference": "500 held-out MNIST digits",
            "feature_space": "evaluation classifier penultimate features (128-d)", "device": str(args.device)}
    (args.out / f"evaluation{suffix}.json").write_text(json.dumps({"settings": meta, "rows": rows}, indent=2) + "\n")
    with open(args.out / f"evaluation{suffix}.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for path in plots(rows, args.out, suffix):
        print("wrote", path)


if __name__ == "__main__":
    main()
