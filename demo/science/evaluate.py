"""Measured guidance trade-offs: `python -m demo.science.evaluate [--quick] [--seeds N] [--only METHOD ...]`.

Sweeps w for every method on the shipped model and measures, with the separate evaluation classifier only:
class accuracy, mean target confidence, FID (classifier features) and precision/recall against a reference half
of the held-out real digits, within-class diversity, NFE and wall time per sample; and, for classifier guidance,
the guiding classifier's own confidence next to the evaluation accuracy.

Every point is run with several seeds (default 2) and reported as mean +- sd over seeds. The real-data floor is
the same metrics between the two disjoint halves of the held-out digits (250 real digits against the 250 of the
reference half, the same sizes as a point): no model can be expected to beat it, and differences between
methods smaller than the seed-to-seed spread are ties. GFCG's three options (guidance.GFCG_OPTIONS) are each
varied alone around its default. Writes assets/evaluation.{json,csv} and plots.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from demo.engine.config import ASSETS_DIR, GUIDES, NUM_CLASSES, PRESETS, Interval, SamplerConfig
from demo.engine.guidance import (
    GFCG_OPTIONS,
    GUIDANCE,
    METHODS,
    make_guidance,
    nfe_per_sample,
)
from demo.engine.metrics import (
    evaluate_images,
    frechet_distance,
    mean_pairwise_distance,
    precision_recall,
)
from demo.engine.pipeline import Models, RunSpec, sample_runs
from demo.engine.samplers import final
from demo.science.data import load_mnist
from demo.science.findings import sweep_rows
from demo.science.plots import method_lines

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
SEEDS = (0, 1000, 2000, 3000)
PER_CLASS = 25                              # 250 samples per point and seed: the size of the reference half
METRICS = ("accuracy", "confidence", "guiding_classifier_confidence", "fid_classifier_features", "precision",
           "recall", "diversity")
VARIANT_WEIGHTS = (1.0, 3.0)                # where GFCG's options are compared
FID = "fid_classifier_features"

# The classifier-guidance weight whose accuracy the tests quote (w multiplies grad log p, guided-diffusion
# `classifier_scale`); CG needs a larger w than CFG for the same effect because a small noisy classifier's
# gradients are weak at high noise.
DOCUMENTED_CG_WEIGHT = 3.0


@dataclass(frozen=True)
class Reference:
    """The real side of every comparison: evaluation-classifier features of the reference half of the held-out
    digits, and the other half (the floor)."""
    features: Tensor
    floor_images: Tensor
    floor_labels: Tensor

    @classmethod
    def of(cls, models: Models) -> Reference:
        images, labels = load_mnist("test")                 # 50 per class
        rank = torch.zeros_like(labels)
        for c in range(NUM_CLASSES):
            rank[labels == c] = torch.arange(int((labels == c).sum()))
        half = rank % 2 == 0                                # 25 per class in each half, disjoint
        _, features = evaluate_images(models.eval_classifier, images[half])
        return cls(features, images[~half], labels[~half])


def sample_all_classes(models: Models, method: str, weight: float, per_class: int, seed: int = 0,
                       sampler: SamplerConfig = SamplerConfig(), batch_size: int = 250,
                       options: dict | None = None, guide: str | None = None, interval: Interval = Interval()
                       ) -> tuple[Tensor, Tensor]:
    """per_class samples of every class: images (N, 1, 28, 28) and their target labels (N,). `options`: a
    method's options (GFCG_OPTIONS); `guide`: the autoguidance guide by name (None: the default)."""
    guidance = make_guidance(method, weight, interval, options=options, **models.guidance_models(guide))
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    images = [final(sample_runs(models, [RunSpec(guidance, labels[i:i + batch_size], seed + i)], sampler,
                                record=False)).cpu() for i in range(0, len(labels), batch_size)]
    return torch.cat(images), labels


def class_accuracy(models: Models, images: Tensor, labels: Tensor) -> float:
    probs, _ = evaluate_images(models.eval_classifier, images)
    return (probs.argmax(1) == labels).float().mean().item()


def measure(models: Models, images: Tensor, labels: Tensor, reference: Reference, sigma_min: float) -> dict:
    """Every metric of one set of images with a target label each."""
    probs, feats = evaluate_images(models.eval_classifier, images)
    precision, recall = precision_recall(reference.features, feats)
    with torch.no_grad():                                   # the guiding classifier at its lowest noise level
        guide = models.classifier(images.to(models.device), sigma_min).softmax(1).cpu()
    diversity = [mean_pairwise_distance(feats[labels == c]) for c in range(NUM_CLASSES)]
    return {"accuracy": (probs.argmax(1) == labels).float().mean().item(),
            "confidence": probs.gather(1, labels[:, None]).mean().item(),
            "guiding_classifier_confidence": guide.gather(1, labels[:, None]).mean().item(),
            FID: frechet_distance(reference.features, feats),
            "precision": precision, "recall": recall, "diversity": sum(diversity) / NUM_CLASSES}


def summarise(per_seed: list[dict]) -> dict:
    """Mean and sample sd over seeds of every metric (sd 0 for a single seed), plus the per-seed values."""
    out = {}
    for key in METRICS:
        values = [m[key] for m in per_seed]
        out[key] = statistics.fmean(values)
        out[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    out["per_seed"] = {key: [round(m[key], 5) for m in per_seed] for key in (FID, "accuracy", "recall")}
    return out


def evaluate_point(models: Models, method: str, weight: float, reference: Reference, per_class: int = PER_CLASS,
                   seeds: tuple[int, ...] = SEEDS[:2], sampler: SamplerConfig = SamplerConfig(),
                   options: dict | None = None, guide: str = "", interval: Interval = Interval()) -> dict:
    """One (method, w) point, mean +- sd over seeds. `options`: a GFCG variant; `guide`: a non-default guide;
    `interval`: the guidance interval."""
    start, per_seed = time.perf_counter(), []
    for seed in seeds:
        images, labels = sample_all_classes(models, method, weight, per_class, seed, sampler, options=options,
                                            guide=guide or None, interval=interval)
        per_seed.append(measure(models, images, labels, reference, sampler.sigma_min))
    seconds = time.perf_counter() - start
    variant = ", ".join(f"{k}={v}" for k, v in (options or {}).items())
    return {"method": method, "w": weight, "variant": variant, "guide": guide,
            "samples": per_class * NUM_CLASSES, "seeds": len(seeds), **summarise(per_seed),
            "nfe_per_sample": nfe_per_sample(method, weight, interval, sampler),
            "seconds_per_sample": seconds / (per_class * NUM_CLASSES * len(seeds))}


def floor_row(models: Models, reference: Reference, sigma_min: float) -> dict:
    """The real-data floor: the other half of the held-out digits, measured exactly like a point."""
    return {"method": "real data", "w": 0.0, "variant": "", "guide": "", "samples": len(reference.floor_labels),
            "seeds": 1, **summarise([measure(models, reference.floor_images, reference.floor_labels, reference,
                                             sigma_min)]), "nfe_per_sample": 0, "seconds_per_sample": 0.0}


def plots(rows: list[dict], out: Path, prefix: str) -> list[Path]:
    suffix = prefix
    sweep = sweep_rows(rows)
    floor = next((r for r in rows if r["method"] == "real data"), None)
    by_method = {m: sorted([r for r in sweep if r["method"] in (m, "unguided")], key=lambda r: r["w"])
                 for m in METHODS[1:] if any(r["method"] == m for r in sweep)}

    def series(key):
        return {GUIDANCE[m].short_title: ([r["w"] for r in rs], [r[key] for r in rs], [r[f"{key}_sd"] for r in rs])
                for m, rs in by_method.items()}

    def floor_line(key, label="real data (floor)"):
        return (label, floor[key]) if floor else None

    colours = {GUIDANCE[m].short_title: GUIDANCE[m].colour for m in METHODS} | {
        "evaluation accuracy": "#111827", "guiding classifier p(c|x)": GUIDANCE["classifier"].colour}
    figures = {
        "accuracy": method_lines(series("accuracy"), "guidance weight w", "accuracy (evaluation classifier)",
                                        "Class accuracy vs w (mean ± sd over seeds)", colours, logx=True,
                                        floor=floor_line("accuracy")),
        "fid": method_lines(series(FID), "guidance weight w", "FID (classifier features)",
                                   "FID vs w (lower is better; ± sd over seeds)", colours, logx=True, logy=True,
                                   floor=floor_line(FID)),
        "precision_recall": method_lines(
            {GUIDANCE[m].short_title: ([r["recall"] for r in rs], [r["precision"] for r in rs])
             for m, rs in by_method.items()}, "recall", "precision", "Precision-recall as w grows", colours),
    }
    if "classifier" in by_method:
        cg = by_method["classifier"]
        figures["classifier_fooling"] = method_lines(
            {"guiding classifier p(c|x)": ([r["w"] for r in cg], [r["guiding_classifier_confidence"] for r in cg],
                                           [r["guiding_classifier_confidence_sd"] for r in cg]),
             "evaluation accuracy": ([r["w"] for r in cg], [r["accuracy"] for r in cg],
                                     [r["accuracy_sd"] for r in cg])},
            "guidance weight w", "value", "Classifier guidance: guide's confidence vs evaluation", colours,
            logx=True)
    paths = []
    for name, fig in figures.items():
        path = out / f"{suffix}_{name}.png"
        fig.savefig(path)
        paths.append(path)
    return paths


def line(r: dict) -> str:
    label = r["method"] + (f" [{r['variant']}]" if r["variant"] else "")
    label += f" guide={r['guide']}" if r["guide"] else ""
    return (f"{label:<34} w={r['w']:<5g} acc {r['accuracy']:.3f}±{r['accuracy_sd']:.3f} "
            f"FID {r[FID]:6.3f}±{r[FID + '_sd']:.3f} P {r['precision']:.2f} R {r['recall']:.2f}±{r['recall_sd']:.2f}")


GUIDE_WEIGHTS = (0.5, 1.0, 2.0, 3.0, 5.0)    # autoguidance with every offered guide (the menu's captions)
INTERVAL_POINT = ("cfg", 3.0)               # where guidance only at high / only at low noise is compared
SIGMA_SPLIT = 1.0                            # the noise level splitting "high" from "low"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny run for tests (< 60 s on a 2-core CPU)")
    parser.add_argument("--preset", choices=[p.key for p in PRESETS], default=PRESETS[0].key,
                        help="the app's settings to evaluate (steps, guidance interval); writes assets/<its file>")
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument("--seeds", type=int, default=2, help=f"seeds per point (at most {len(SEEDS)})")
    parser.add_argument("--only", nargs="*", choices=METHODS[1:],
                        help="guided methods to sweep (default: all); the other methods' rows of an earlier run "
                             "with the same settings are kept")
    parser.add_argument("--no-variants", action="store_true",
                        help="skip the GFCG option variants, the other guides and the interval halves")
    parser.add_argument("--out", type=Path, default=ASSETS_DIR)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    preset = next(p for p in PRESETS if p.key == args.preset)
    sampler, interval = preset.sampler, preset.interval
    per_class, weights = (2, (0.0, 1.0, 4.0)) if args.quick else (args.per_class, WEIGHTS)
    if args.quick:
        sampler = replace(sampler, num_steps=4)
    seeds = SEEDS[:max(1, min(args.seeds, len(SEEDS)))]
    name = Path(preset.evaluation).stem + ("_quick" if args.quick else "")
    models = Models.load(device=args.device)
    reference = Reference.of(models)
    point = dict(reference=reference, per_class=per_class, seeds=seeds, sampler=sampler)
    rows = [floor_row(models, reference, sampler.sigma_min), evaluate_point(models, "unguided", 0.0, **point)]
    for r in rows:
        print(line(r), flush=True)

    def add(method, weight, **extra):
        rows.append(evaluate_point(models, method, weight, **{"interval": interval, **extra}, **point))
        print(line(rows[-1]), flush=True)
    for method in args.only or METHODS[1:]:
        for weight in weights[1:]:
            add(method, weight)
    if not args.no_variants and (not args.only or "gfcg" in args.only):
        for option, values in GFCG_OPTIONS.items():
            for value in values[1:]:
                for weight in (weights[1:2] if args.quick else VARIANT_WEIGHTS):
                    add("gfcg", weight, options={option: value})
    if not args.no_variants and not args.only:
        for guide in GUIDES[1:]:
            for weight in (weights[1:2] if args.quick else GUIDE_WEIGHTS):
                add("autoguidance", weight, guide=guide.key)
        method, weight = INTERVAL_POINT
        for part, half in (("high noise only", Interval(SIGMA_SPLIT, math.inf)),
                           ("low noise only", Interval(0.0, SIGMA_SPLIT))):
            add(method, weight, interval=half)
            rows[-1]["variant"] = f"interval {part} ({half.sigma_lo:g}, {half.sigma_hi:g}]"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    if args.only and path.exists():             # keep the other methods' rows of an earlier run, same settings
        earlier = json.loads(path.read_text())
        if earlier["settings"].get("seeds") == list(seeds) and earlier["settings"]["steps"] == sampler.num_steps:
            rows += [r for r in earlier["rows"] if r["method"] not in {*args.only, "real data", "unguided"}
                     and not (r["variant"] and "gfcg" in args.only)]
    rows.sort(key=lambda r: (r["method"] != "real data", METHODS.index(r["method"]) if r["method"] in METHODS
                             else -1, bool(r["variant"]), r["variant"], bool(r["guide"]), r["guide"], r["w"]))
    meta = {"preset": preset.key, "per_class": per_class, "samples_per_point": per_class * NUM_CLASSES,
            "seeds": list(seeds), "steps": sampler.num_steps, "sampler": sampler.sampler,
            "interval": [interval.sigma_lo, interval.sigma_hi if math.isfinite(interval.sigma_hi) else None],
            "real_reference": f"{len(reference.features)} held-out MNIST digits (every other digit of each class)",
            "floor": f"the other {len(reference.floor_labels)} held-out digits against the reference",
            "feature_space": "evaluation classifier penultimate features (128-d)", "device": str(args.device),
            "spread": "mean ± sample sd over seeds"}
    path.write_text(json.dumps({"settings": meta, "rows": rows}, indent=2) + "\n")
    with open(args.out / f"{name}.csv", "w", newline="") as file:
        fields = [k for k in rows[0] if k != "per_seed"]
        writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    for path in plots(rows, args.out, name):
        print("wrote", path)


if __name__ == "__main__":
    main()
