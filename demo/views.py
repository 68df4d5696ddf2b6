"""Everything the app shows, drawn from finished runs: galleries, the comparison grid, trajectory views,
the sweep, the summary table and the precomputed evaluation. No sampling happens here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import render
from .config import CLASS_NAMES, Interval
from .explorer import MethodRun, Results
from .guidance import GUIDANCE
from .metrics import mean_pairwise_distance
from .pipeline import Request

ASSETS = Path(__file__).resolve().parent.parent / "assets"
FILMSTRIP_COLUMNS = 10


def title(method: str) -> str:
    return GUIDANCE[method].title


def short_title(method: str) -> str:
    return GUIDANCE[method].short_title


def colours(titles: dict[str, str]) -> dict[str, str]:
    """Colour per displayed name, from the method classes ({name: method})."""
    return {name: GUIDANCE[method].colour for name, method in titles.items()}


def gallery(run: MethodRun) -> list[tuple[Image.Image, str]]:
    return [(render.digit(px), caption) for px, caption in zip(render.to_uint8(run.samples), run.captions())]


def settings_line(base: Request) -> str:
    """The settings that reproduce a result, in one line."""
    interval = "" if base.interval == Interval() else \
        f", interval ({base.interval.sigma_lo:g}, {base.interval.sigma_hi:g}]"
    return (f"{CLASS_NAMES[base.label]}, w = {base.weight:g}, seed {base.seed}, {base.sampler.num_steps} "
            f"{base.sampler.sampler} steps{interval}")


def comparison_grid(results: Results) -> Image.Image:
    """All methods' samples, one row each, with accuracy and the settings that reproduce them."""
    rows = [render.to_uint8(run.samples) for run in results.runs.values()]
    labels = [f"{short_title(m)}  {run.accuracy():.0%}" for m, run in results.runs.items()]
    return render.grid(rows, labels, label_width=225, title=settings_line(results.base))


def filmstrip(runs: dict[str, MethodRun], index: int, columns: int = FILMSTRIP_COLUMNS) -> Image.Image:
    """x_t and the x0 estimate of sample `index` at ~10 evenly spaced steps, two rows per method."""
    run0 = next(iter(runs.values()))
    pick = np.unique(np.linspace(0, len(run0.frame_steps) - 1, min(columns, len(run0.frame_steps))).round()
                     .astype(int))
    rows, labels = [], []
    for method, run in runs.items():
        rows += [run.frames_x[pick, index], run.frames_denoised[pick, index]]
        labels += [f"{short_title(method)}: x_t", f"{short_title(method)}: x0 estimate"]
    cols = [f"σ={s:.3g}" for s in run0.frame_sigmas[pick]]
    return render.grid(rows, labels, cols, scale=3, label_width=220)


def animation(runs: dict[str, MethodRun], index: int) -> bytes:
    """GIF of the denoising of sample `index`, all methods side by side (x_t above, x0 estimate below)."""
    run0 = next(iter(runs.values()))
    frames = []
    for f, sigma in enumerate(run0.frame_sigmas):
        rows = [np.stack([run.frames_x[f, index] for run in runs.values()]),
                np.stack([run.frames_denoised[f, index] for run in runs.values()])]
        frames.append(render.grid(rows, [f"x_t  σ={sigma:.3g}", "x0 estimate"], [short_title(m) for m in runs],
                                  scale=3, label_width=110))
    return render.animation(frames)


def step_plots(runs: dict[str, MethodRun], index: int):
    steps = np.arange(len(next(iter(runs.values())).p_target))
    names = {short_title(m): m for m in runs}
    p = render.step_curves({short_title(m): r.p_target[:, index] for m, r in runs.items()}, steps,
                           "p(target | x_t)", "Noisy classifier's belief in the target class", colours(names),
                           ylim=(0, 1.02))
    g = render.step_curves({short_title(m): r.guidance_norm[:, index] for m, r in runs.items()}, steps,
                           "‖clamp(D_w) − clamp(D)‖ (L2)", "How far guidance moves the x0 estimate", colours(names),
                           log=True)
    return p, g


def sweep_figures(results: Results):
    """Grid of the first 4 samples per (method, w) and the fidelity-vs-diversity trade-off."""
    methods = list(dict.fromkeys(m for m, _ in results.runs))
    weights = list(dict.fromkeys(w for _, w in results.runs))
    runs = results.runs
    rows = [np.concatenate([render.to_uint8(runs[m, w].samples[:4]) for w in weights]) for m in methods]
    per = min(4, len(next(iter(runs.values())).samples))
    cols = [f"w={w:g}" if j % per == 0 else "" for w in weights for j in range(per)]
    picture = render.grid(rows, [short_title(m) for m in methods], cols, label_width=190)
    points = {short_title(m): [(w, mean_pairwise_distance(runs[m, w].features), runs[m, w].confidence())
                               for w in weights] for m in methods}
    figure = render.tradeoff(points, "diversity: mean pairwise distance (eval-classifier features)",
                             "fidelity: mean p(target) (evaluation classifier)", "Fidelity vs diversity as w grows",
                             colours({short_title(m): m for m in methods}))
    return picture, figure


def timing(results: Results) -> str:
    """How the runs were obtained: each batch sampled for this request with its time, the rest from the cache."""
    batches: dict[int, list[MethodRun]] = {}
    for run in results.runs.values():
        batches.setdefault(run.batch, []).append(run)
    parts = [f"{group[0].seconds:.2f} s for {len(group)} run{'s' * (len(group) > 1)} sampled together"
             for batch, group in batches.items() if batch in results.fresh_batches]
    cached = sum(len(group) for batch, group in batches.items() if batch not in results.fresh_batches)
    if cached:
        parts.append(f"{cached} run{'s' * (cached > 1)} from cache")
    return "; ".join(parts)


def summary(results: Results) -> str:
    """Markdown table: evaluation-classifier accuracy and confidence, cost; and how the runs were obtained."""
    lines = ["| method | accuracy | mean p(target) | NFE / sample |", "|---|---|---|---|"]
    for method, run in results.runs.items():
        lines.append(f"| {title(method)} | {run.accuracy():.0%} | {run.confidence():.2f} | {run.request.nfe} |")
    return "\n".join(lines) + "\n\nAccuracy and confidence: the separate evaluation classifier. " \
        f"Sampling: {timing(results)}. Methods computed together share one batched network call per step."


def saved_results(folder: Path = ASSETS) -> tuple[str, list[str]] | None:
    """The last full evaluation (assets/evaluation.json) as a markdown table plus its plot files, or None."""
    path = folder / "evaluation.json"
    if not path.exists():
        return None
    table = json.loads(path.read_text())
    settings = table["settings"]
    lines = [f"{settings['samples_per_point']} samples per point ({settings['per_class']} per class), "
             f"{settings['steps']} DDIM steps, seed {settings['seed']}; real reference: "
             f"{settings['real_reference']}. Reproduce with `python -m demo.evaluate`.", "",
             "| method | w | accuracy | FID (classifier features) | precision | recall | diversity | NFE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table["rows"]:
        lines.append(f"| {r['method']} | {r['w']:g} | {r['accuracy']:.3f} | {r['fid_classifier_features']:.2f} | "
                     f"{r['precision']:.2f} | {r['recall']:.2f} | {r['diversity']:.2f} | {r['nfe_per_sample']} |")
    plots = [str(folder / f"evaluation_{n}.png") for n in ("accuracy", "fid", "precision_recall",
                                                           "classifier_fooling")]
    return "\n".join(lines), [p for p in plots if Path(p).exists()]
