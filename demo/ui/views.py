"""What the app shows besides the comparison picture (picture.py), drawn from finished runs: the trajectory
views, the sweep, the summary table, the settings line and the stored evaluation. No sampling and no torch
here: runs carry their pixels.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from demo.engine.config import ASSETS_DIR, CLASS_NAMES, Interval
from demo.engine.guidance import GUIDANCE
from demo.engine.metrics import mean_pairwise_distance
from demo.engine.pipeline import Request
from demo.serving.service import FinishedRun, Results
from demo.ui import render

FILMSTRIP_COLUMNS = 10
VERDICT_MARKS = {"correct": "✓", "wrong": "✗", "unrealistic": "?"}


def title(method: str) -> str:
    return GUIDANCE[method].title


def short_title(method: str) -> str:
    return GUIDANCE[method].short_title


def colours(titles: dict[str, str]) -> dict[str, str]:
    """Colour per displayed name, from the method classes ({name: method})."""
    return {name: GUIDANCE[method].colour for name, method in titles.items()}


def settings_line(base: Request, weights: dict[str, float] | None = None, short: bool = False,
                  show_w: bool = True) -> str:
    """The settings that reproduce a result, in one line (`short`: per-method w left to the rows; `show_w`
    False: no w at all, for a picture of several w)."""
    interval = "" if base.interval == Interval() else \
        f", interval ({base.interval.sigma_lo:g}, {base.interval.sigma_hi:g}]"
    same = not weights or len(set(weights.values())) == 1
    w = f"w = {next(iter(weights.values())) if weights else base.weight:g}" if same else \
        "w per method" if short else "w = " + ", ".join(f"{short_title(m)} {w:g}" for m, w in weights.items())
    w = f"{w}, " if show_w else ""
    return (f"{CLASS_NAMES[base.label]}, {w}seed {base.seed}, {base.num_samples} samples, "
            f"{base.sampler.num_steps} {base.sampler.sampler} steps{interval}")


def filmstrip_html(runs: dict[str, FinishedRun], index: int, columns: int = FILMSTRIP_COLUMNS) -> str:
    """x_t and the x0 estimate of sample `index` at ~10 evenly spaced steps, two rows per method."""
    run0 = next(iter(runs.values()))
    pick = np.unique(np.linspace(0, len(run0.frame_steps) - 1, min(columns, len(run0.frame_steps))).round()
                     .astype(int))
    head = "".join(f'<span class="gl-col">σ {s:.2g}</span>' for s in run0.frame_sigmas[pick])
    rows = [f'<div class="gl-row gl-head"><div class="gl-label"><span class="gl-meta">noise level →</span></div>'
            f'<div class="gl-cells" style="--gl-columns: {len(pick)}">{head}</div></div>']
    for method, run in runs.items():
        for kind, frames in (("x_t (noisy state)", run.frames_x), ("x0 estimate", run.frames_denoised)):
            cells = "".join(f'<span class="gl-frame"><img src="{render.data_uri(frames[f, index])}" '
                            f'alt="{kind} at step {run.frame_steps[f]}"></span>' for f in pick)
            rows.append(f'<div class="gl-row" style="--gl-colour: {GUIDANCE[method].colour}">'
                        f'<div class="gl-label"><span class="gl-name">{html.escape(short_title(method))}</span>'
                        f'<span class="gl-meta">{kind}</span></div>'
                        f'<div class="gl-cells" style="--gl-columns: {len(pick)}">{cells}</div></div>')
    return f'<div class="gl-comparison gl-filmstrip">{"".join(rows)}</div>'


def animation(runs: dict[str, FinishedRun], index: int) -> bytes:
    """GIF of the denoising of sample `index`, all methods side by side (x_t above, x0 estimate below)."""
    run0 = next(iter(runs.values()))
    frames = []
    for f, sigma in enumerate(run0.frame_sigmas):
        rows = [np.stack([run.frames_x[f, index] for run in runs.values()]),
                np.stack([run.frames_denoised[f, index] for run in runs.values()])]
        frames.append(render.grid(rows, [f"x_t  σ={sigma:.2g}", "x0 estimate"], [short_title(m) for m in runs],
                                  scale=4, label_width=130, font_size=15, gap=4))
    return render.animation(frames)


def step_plots(runs: dict[str, FinishedRun], index: int):
    """p(target | x_t) and how far guidance moved the x0 estimate, per step, for sample `index`."""
    steps = np.arange(len(next(iter(runs.values())).p_target))
    names = {short_title(m): m for m in runs}
    return render.step_panels([
        ("Noisy classifier's belief in the class", "p(target | x_t)",
         {short_title(m): r.p_target[:, index] for m, r in runs.items()}, False, (0, 1.02)),
        ("How far guidance moves the x0 estimate", "‖clamp(D_w) − clamp(D)‖",
         {short_title(m): r.guidance_norm[:, index] for m, r in runs.items()}, True, None)], steps, colours(names))


def comparison_grid(results: Results) -> bytes:
    """All methods' samples as one labelled PNG (the download), with the settings that reproduce them."""
    rows = [run.pixels for run in results.runs.values()]
    labels = [f"{short_title(m)}{'' if m == 'unguided' else f' w={run.request.weight:g}'}  {run.accuracy():.0%}"
              for m, run in results.runs.items()]
    weights = {m: run.request.weight for m, run in results.runs.items() if m != "unguided"}
    return render.png(render.grid(rows, labels, label_width=265, title=settings_line(results.base, weights,
                                                                                    short=True)))


def sweep_html(results: Results, sample: int = 0) -> str:
    """Rows are methods, columns are w: one sample (the same seed and noise everywhere), so the whole sweep fits
    one screen; the picker beside it chooses the sample."""
    methods = list(dict.fromkeys(m for m, _ in results.runs))
    weights = list(dict.fromkeys(w for _, w in results.runs))
    k = min(sample, len(results.runs[methods[0], weights[0]].pixels) - 1)
    head = "".join(f'<span class="gl-col">w = {w:g}</span>' for w in weights)
    rows = [f'<div class="gl-row gl-head" aria-hidden="true"><div class="gl-label"><span class="gl-meta">w →'
            f'</span></div><div class="gl-cells" style="--gl-columns: {len(weights)}">{head}</div></div>']
    for method in methods:
        cells = []
        for w in weights:
            run = results.runs[method, w]
            verdict, predicted = run.verdicts()[k], int(run.probs[k].argmax())
            alt = f"sample {k + 1}, {GUIDANCE[method].title}, w = {w:g}: read as {predicted}, {verdict}"
            cells.append(f'<span class="gl-frame gl-{verdict}"><img src="{render.data_uri(run.pixels[k])}" '
                         f'alt="{html.escape(alt)}"><span class="gl-verdict" aria-hidden="true">'
                         f'{VERDICT_MARKS[verdict]} {predicted}</span></span>')
        rows.append(f'<div class="gl-row" style="--gl-colour: {GUIDANCE[method].colour}">'
                    f'<div class="gl-label"><span class="gl-name">{html.escape(short_title(method))}</span></div>'
                    f'<div class="gl-cells" style="--gl-columns: {len(weights)}">{"".join(cells)}</div></div>')
    caption = settings_line(results.base, show_w=False)
    return (f'<div class="gl-comparison gl-sweep" style="--gl-rows: {len(methods)}"><div class="gl-caption">'
            f'{html.escape(caption)}, sample {k + 1} — the same seed and noise for every w</div>{"".join(rows)}'
            f'</div>')


def sweep_tradeoff(results: Results):
    """Fidelity (mean p(target)) against diversity (mean pairwise feature distance), one curve per method."""
    methods = list(dict.fromkeys(m for m, _ in results.runs))
    weights = list(dict.fromkeys(w for _, w in results.runs))
    runs = results.runs
    points = {short_title(m): [(w, mean_pairwise_distance(runs[m, w].features), runs[m, w].confidence())
                               for w in weights] for m in methods}
    return render.tradeoff(points, "diversity: mean pairwise distance (eval-classifier features)",
                           "fidelity: mean p(target) (evaluation classifier)", "Fidelity vs diversity as w grows",
                           colours({short_title(m): m for m in methods}))


def timing(results: Results) -> str:
    """How the runs were obtained: each batch sampled for this request with its time, the rest from the cache."""
    batches: dict[int, list[FinishedRun]] = {}
    for run in results.runs.values():
        batches.setdefault(run.batch, []).append(run)
    parts = [f"{group[0].seconds:.2f} s for {len(group)} run{'s' * (len(group) > 1)} sampled together"
             for batch, group in batches.items() if batch in results.fresh_batches]
    cached = sum(len(group) for batch, group in batches.items() if batch not in results.fresh_batches)
    if cached:
        parts.append(f"{cached} run{'s' * (cached > 1)} from cache")
    return "; ".join(parts)


def summary(results: Results) -> str:
    """Markdown table: the w each row used, evaluation-classifier accuracy and confidence, realism, cost."""
    lines = ["| method | w | correct | unrealistic | mean p(target) | NFE / sample |", "|---|---|---|---|---|---|"]
    for method, run in results.runs.items():
        w = "–" if method == "unguided" else f"{run.request.weight:g}"
        lines.append(f"| {short_title(method)} | {w} | {run.accuracy():.0%} | {1 - run.realistic().float().mean():.0%} "
                     f"| {run.confidence():.2f} | {run.request.nfe} |")
    return "\n".join(lines) + f"\n\nSampling: {timing(results)}."


def saved_results(folder: Path = ASSETS_DIR) -> tuple[str, list[str]] | None:
    """The last full evaluation (assets/evaluation.json) as a markdown table plus its plot files, or None."""
    path = folder / "evaluation.json"
    if not path.exists():
        return None
    table = json.loads(path.read_text())
    settings = table["settings"]
    seeds = settings.get("seeds", [settings.get("seed", 0)])
    lines = [f"{settings['samples_per_point']} samples per point and seed ({settings['per_class']} per class), "
             f"{len(seeds)} seeds, mean ± sd over seeds; {settings['steps']} DDIM steps; real reference: "
             f"{settings['real_reference']}. The first row, real data, is the floor: held-out digits measured "
             f"the same way. Differences within the spread are ties. Reproduce with `python -m demo.science.evaluate`.", "",
             "| method | w | accuracy | FID (classifier features) | precision | recall | diversity | NFE |",
             "|---|---|---|---|---|---|---|---|"]

    def sd(r, key, digits):
        spread = key + "_sd" in r and r.get("seeds", 1) > 1
        return f"{r[key]:.{digits}f}" + (f" ± {r[key + '_sd']:.{digits}f}" if spread else "")

    for r in table["rows"]:
        name = short_title(r["method"]) if r["method"] in GUIDANCE else r["method"]
        name += f" ({r['variant']})" if r.get("variant") else ""
        lines.append(f"| {name} | {r['w']:g} | {sd(r, 'accuracy', 3)} | {sd(r, 'fid_classifier_features', 2)} | "
                     f"{r['precision']:.2f} | {sd(r, 'recall', 2)} | {r['diversity']:.2f} | {r['nfe_per_sample']} |")
    plots = [str(folder / f"evaluation_{n}.png") for n in ("accuracy", "fid", "precision_recall",
                                                           "classifier_fooling")]
    return "\n".join(lines), [p for p in plots if Path(p).exists()]
