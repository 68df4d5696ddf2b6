"""The autoguidance guide study: `python -m demo.science.guide_study [train|evaluate|ship] [--quick]`.

Karras et al. (2024) build the guide D_weak from the same model family, degraded in a way "compatible" with the
main model's errors: less capacity and/or less training, with its EMA length tuned. This module trains a small
family of such guides and measures, for each, autoguidance's FID, recall and accuracy over w (the same
evaluation as demo.science.evaluate), and the w at which FID doubles from its best.

    train     three training runs, snapshots kept in runs/guides/ (resumable; ~15 min on a 2-core CPU):
              the main architecture to 1/4 of its training (snapshots at 1/16, 1/8, 1/4), and half and quarter
              width to full training (snapshots at 1/4 and full); every run keeps EMAs of several half-lives.
    evaluate  autoguidance with every guide at w in STUDY_WEIGHTS -> assets/guide_study.{json,png}
    ship      copy the chosen guides (SHIPPED) to weights/guide_<name>.* with their metrics in their JSON.

EMA half-lives are named as a fraction of the snapshot's iterations (0.1 = "ema10": half-life 10% of training).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from demo.engine import checkpoints
from demo.engine.config import (
    ASSETS_DIR,
    GUIDES,
    NUM_CLASSES,
    SamplerConfig,
    TrainConfig,
    UNetConfig,
)
from demo.engine.networks import Denoiser
from demo.engine.pipeline import Models
from demo.science.evaluate import FID, PER_CLASS, SEEDS, Reference, evaluate_point, line
from demo.science.findings import degradation_point
from demo.science.plots import method_lines
from demo.science.train import JOBS, RUNS_DIR, Job, denoiser_loss, train

GUIDE_RUNS = RUNS_DIR / "guides"
MAIN_ITERATIONS = JOBS["denoiser"].train.iterations          # 6000: the main model's training
EMA_FRACTIONS = (0.05, 0.1, 0.2)                             # EMA half-life / snapshot iterations
STUDY_WEIGHTS = (0.5, 1.0, 2.0, 3.0, 5.0)


@dataclass(frozen=True)
class GuideRun:
    """One training run of the family; snapshots at the given iterations, EMAs at EMA_FRACTIONS of each."""
    name: str
    unet: UNetConfig
    iterations: int
    snapshots: tuple[int, ...]
    seed: int
    about: str

    def job(self) -> Job:
        return Job(lambda: Denoiser(self.unet), denoiser_loss,
                   TrainConfig(iterations=self.iterations, batch_size=128, lr=1e-3, seed=self.seed,
                               ema_halflife=halflife(self.iterations, 0.1)), self.about)


def halflife(iterations: int, fraction: float) -> int:
    return max(1, round(iterations * fraction))


def training_name(iterations: int) -> str:
    """'1/4' for a quarter of the main model's training, 'full' for all of it."""
    return "full" if iterations == MAIN_ITERATIONS else f"1/{MAIN_ITERATIONS // iterations}"


RUNS = (
    GuideRun("main", UNetConfig(channels=(32, 64), emb_dim=128), MAIN_ITERATIONS // 4,
             (MAIN_ITERATIONS // 16, MAIN_ITERATIONS // 8, MAIN_ITERATIONS // 4), 11,
             "the main architecture, trained less"),
    GuideRun("half", UNetConfig(channels=(16, 32), emb_dim=64), MAIN_ITERATIONS,
             (MAIN_ITERATIONS // 4, MAIN_ITERATIONS), 12, "half the channels (~1/4 the parameters)"),
    GuideRun("quarter", UNetConfig(channels=(8, 16), emb_dim=32), MAIN_ITERATIONS,
             (MAIN_ITERATIONS // 4, MAIN_ITERATIONS // 2, MAIN_ITERATIONS), 13,
             "a quarter of the channels (~1/16 the parameters)"),
)


def guide_name(run: GuideRun, iterations: int, fraction: float) -> str:
    """e.g. 'half-1/4-ema10': half width, a quarter of the training, EMA half-life 10% of it."""
    return f"{run.name}-{training_name(iterations).replace('/', 'of')}-ema{round(fraction * 100)}"


def train_family(device: torch.device, runs: tuple[GuideRun, ...] = RUNS) -> None:
    """Train every run; write each snapshot x EMA to runs/guides/snapshots/<guide>.safetensors + .json."""
    out = GUIDE_RUNS / "snapshots"
    for run in runs:
        halflives = tuple(sorted({halflife(s, f) for s in run.snapshots for f in EMA_FRACTIONS}))
        start = time.perf_counter()
        for done, emas in train(run.job(), device, GUIDE_RUNS / run.name / "state.pt", halflives, run.snapshots):
            for fraction in EMA_FRACTIONS:
                ema = emas[halflife(done, fraction)]
                info = {"about": f"autoguidance guide candidate: {run.about}, {training_name(done)} of the main "
                                 f"model's training, EMA half-life {fraction:.0%} of it",
                        "train": dataclasses.asdict(dataclasses.replace(run.job().train,
                                                                        ema_halflife=halflife(done, fraction))),
                        "snapshot_iteration": done, "device": str(device),
                        "train_seconds_to_snapshot": round(time.perf_counter() - start, 1),
                        "num_parameters": sum(p.numel() for p in ema.parameters())}
                checkpoints.save(ema, guide_name(run, done, fraction), info, out)
            print(run.name, done, "saved", flush=True)


CANDIDATES = GUIDE_RUNS / "snapshots"
RESULTS = GUIDE_RUNS / "results"
SHIPPED_BEFORE = "half-1of4-ema10-shipped"   # the guide shipped before the study (now guide_collapses_early)


def candidates() -> list[str]:
    """Every trained guide candidate: the snapshots, plus the guide shipped before the study (its own 1500-it
    run), copied in from weights/ (where it is weak_denoiser before the study, guide_collapses_early after)."""
    if not (CANDIDATES / f"{SHIPPED_BEFORE}.json").exists():
        for guide in GUIDES:
            if not (checkpoints.WEIGHTS_DIR / f"{guide.file}.json").exists():
                continue
            info = checkpoints.load_info(guide.file)
            study = info.get("study")            # none yet: before the study, weak_denoiser is the old guide
            if study is None or study["candidate"] == SHIPPED_BEFORE:
                info = {k: v for k, v in info.items() if k not in ("architecture", "config", "study", "guide")}
                checkpoints.save(checkpoints.load(guide.file), SHIPPED_BEFORE, info, CANDIDATES)
                break
    return [path.stem for path in sorted(CANDIDATES.glob("*.json")) if path.stem != "MANIFEST"]


def load_candidate(name: str, device: torch.device) -> torch.nn.Module:
    return checkpoints.load(name, CANDIDATES, device)


def study_one(models: Models, name: str, reference: Reference, seeds: tuple[int, ...], sampler: SamplerConfig
              ) -> dict:
    """Autoguidance with one guide over STUDY_WEIGHTS (cached in runs/guides/results/<name>.json)."""
    path = RESULTS / f"{name}.json"
    key = {"seeds": list(seeds), "weights": list(STUDY_WEIGHTS), "steps": sampler.num_steps}
    if path.exists() and json.loads(path.read_text())["key"] == key:
        return json.loads(path.read_text())
    guided = replace(models, weak_net=load_candidate(name, models.device))
    rows = [evaluate_point(guided, "autoguidance", w, reference, seeds=seeds, sampler=sampler)
            for w in STUDY_WEIGHTS]
    for r in rows:
        print(name, line(r), flush=True)
    info = checkpoints.load_info(name, CANDIDATES)
    result = {"key": key, "name": name, "num_parameters": info["num_parameters"],
              "iterations": info.get("snapshot_iteration", info["train"]["iterations"]),
              "ema_halflife": info["train"]["ema_halflife"], "channels": info["config"]["channels"], "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary(result: dict, unguided: dict) -> dict:
    """Best FID (w = 0, unguided, included), its w, recall and accuracy there, FID at w = 3 over the best, and
    the w where FID doubles from its best (measured.degradation_point)."""
    rows = [unguided, *result["rows"]]
    best = min(rows, key=lambda r: r[FID])
    at3 = next(r for r in rows if r["w"] == 3.0)
    doubles = degradation_point([(r["w"], r[FID]) for r in rows], best["w"], best[FID])
    return {"guide": result["name"], "parameters": result["num_parameters"], "iterations": result["iterations"],
            "ema_halflife": result["ema_halflife"], "best_fid": best[FID], "best_fid_sd": best[FID + "_sd"],
            "best_w": best["w"], "recall_at_best": best["recall"], "accuracy_at_best": best["accuracy"],
            "fid_w3_over_best": at3[FID] / best[FID], "fid_doubles_at_w": doubles}


def evaluate_study(device: torch.device, names: list[str] | None, seeds: tuple[int, ...]) -> None:
    models = Models.load(device=device)
    sampler = SamplerConfig()
    reference = Reference.of(models)
    point = dict(reference=reference, seeds=seeds, sampler=sampler)
    base = RESULTS / "_base.json"                        # unguided and CFG, the same for every guide
    key = {"seeds": list(seeds), "steps": sampler.num_steps}
    if base.exists() and json.loads(base.read_text())["key"] == key:
        unguided, *cfg = json.loads(base.read_text())["rows"]
    else:
        unguided = evaluate_point(models, "unguided", 0.0, **point)
        cfg = [evaluate_point(models, "cfg", w, **point) for w in (0.25, 0.5, 1.0)]
        RESULTS.mkdir(parents=True, exist_ok=True)
        base.write_text(json.dumps({"key": key, "rows": [unguided, *cfg]}, indent=2) + "\n")
    available = candidates()
    todo = names or [name for name in STUDIED if name in available]
    results = [study_one(models, name, reference, seeds, sampler) for name in todo]
    table = sorted((summary(r, unguided) for r in results), key=lambda s: s["best_fid"])
    cfg_best = min([unguided, *cfg], key=lambda r: r[FID])
    out = {"settings": {"seeds": list(seeds), "samples_per_seed": PER_CLASS * NUM_CLASSES, "steps": sampler.num_steps,
                        "weights": list(STUDY_WEIGHTS), "main_iterations": MAIN_ITERATIONS},
           "unguided": unguided,
           "cfg_best": {"w": cfg_best["w"], "fid": cfg_best[FID], "fid_sd": cfg_best[FID + "_sd"]},
           "guides": table, "rows": {r["name"]: r["rows"] for r in results}}
    ASSETS_DIR.mkdir(exist_ok=True)
    (ASSETS_DIR / "guide_study.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'guide':<26} {'params':>7} {'iters':>5} {'ema':>5} {'best FID':>12} {'at w':>5} {'recall':>6} "
          f"{'acc':>5} {'FID(3)/best':>11} {'doubles at w':>12}")
    for s in table:
        doubles = "-" if s["fid_doubles_at_w"] is None else f"{s['fid_doubles_at_w']:.2f}"
        print(f"{s['guide']:<26} {s['parameters']:>7} {s['iterations']:>5} {s['ema_halflife']:>5} "
              f"{s['best_fid']:6.3f}±{s['best_fid_sd']:.3f} {s['best_w']:>5g} {s['recall_at_best']:6.2f} "
              f"{s['accuracy_at_best']:5.2f} {s['fid_w3_over_best']:11.2f} {doubles:>12}")
    print(f"CFG best: FID {cfg_best[FID]:.3f} at w = {cfg_best['w']:g}")
    plot(out)


def plot(study: dict) -> None:
    colours = {}
    series = {}
    palette = ["#db2777", "#2563eb", "#059669", "#d97706", "#7c3aed", "#0891b2", "#65a30d", "#dc2626", "#4b5563",
               "#a16207", "#9333ea", "#0f766e"]
    for k, s in enumerate(study["guides"]):
        rows = [study["unguided"], *study["rows"][s["guide"]]]
        series[s["guide"]] = ([r["w"] for r in rows], [r[FID] for r in rows], [r[FID + "_sd"] for r in rows])
        colours[s["guide"]] = palette[k % len(palette)]
    fig = method_lines(series, "autoguidance weight w", "FID (classifier features)",
                              "Autoguidance: FID vs w for each guide (1 seed, 250 samples per point)", colours,
                              logy=True, floor=("CFG's best", study["cfg_best"]["fid"]))
    fig.set_size_inches(7.5, 4.8)
    fig.axes[0].set_xticks([0, *STUDY_WEIGHTS])
    fig.axes[0].legend(fontsize=7, ncols=2)
    fig.savefig(ASSETS_DIR / "guide_study.png")
    print("wrote", ASSETS_DIR / "guide_study.png")


# The guides the app offers (config.GUIDES key -> study candidate), chosen from assets/guide_study.json.
SHIPPED = {"default": "quarter-1of2-ema20", "collapses_early": SHIPPED_BEFORE, "mild": "main-1of16-ema10"}
STUDIED = ("quarter-1of2-ema20", "quarter-1of2-ema10", "quarter-full-ema10", "quarter-1of4-ema20",
           "quarter-1of4-ema10", "quarter-1of4-ema5", "half-1of4-ema10", SHIPPED_BEFORE, "main-1of16-ema10",
           "main-1of8-ema10", "main-1of8-ema5", "main-1of4-ema10")     # what the shipped study evaluated


def ship(shipped: dict[str, str] = SHIPPED, out: Path = checkpoints.WEIGHTS_DIR) -> None:
    """Copy the chosen candidates to weights/ under their config.GUIDES file names, with their study metrics."""
    study = json.loads((ASSETS_DIR / "guide_study.json").read_text())
    metrics = {s["guide"]: s for s in study["guides"]}
    for guide in GUIDES:
        name = shipped[guide.key]
        net = load_candidate(name, torch.device("cpu"))
        info = checkpoints.load_info(name, CANDIDATES)
        info = {k: v for k, v in info.items() if k not in ("architecture", "config")}
        info |= {"about": f"autoguidance guide '{guide.label}' ({guide.lesson}); study candidate {name}",
                 "guide": guide.key, "study": {"candidate": name, **metrics[name],
                                               "cfg_best_fid": study["cfg_best"]["fid"],
                                               "settings": study["settings"]},
                 "reproduce": "python -m demo.science.guide_study train && python -m demo.science.guide_study evaluate && "
                              "python -m demo.science.guide_study ship"}
        checkpoints.save(net, guide.file, info, out)
        print(f"{guide.key}: {name} -> {out / guide.file}.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("train", "evaluate", "ship"))
    parser.add_argument("--only", nargs="*", help="runs to train, or guides to evaluate (default: all)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point in the study")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage == "train":
        train_family(torch.device(args.device), tuple(r for r in RUNS if not args.only or r.name in args.only))
    elif args.stage == "evaluate":
        evaluate_study(torch.device(args.device), args.only, SEEDS[:args.seeds])
    else:
        ship()


if __name__ == "__main__":
    main()
