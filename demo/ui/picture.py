"""The comparison picture (HTML: crisp digits, real text, clickable and keyboard-reachable tiles), its forming
preview while it samples, and the w ladder's payload that lets the page swap rows without the server.

Rows are methods and columns are samples with the same seed and noise: compare down a column. Every tile says
in words what it shows (its text alternative), so nothing is told by colour alone.
"""
from __future__ import annotations

import html
import json

import numpy as np

from demo.engine.guidance import GUIDANCE
from demo.engine.pipeline import Request
from demo.serving.service import FinishedRun
from demo.ui import render

COLUMNS = 8                      # digits per row; more samples wrap onto further rows
VERDICT = {"correct": ("✓", "right class", "realistic"), "wrong": ("✗", "another class", "realistic"),
           "unrealistic": ("?", "unrealistic", "far from every real digit")}
LEGEND = ("✓ right class · ✗ another class · ? unrealistic (far from every real digit) — read by a separate "
          "evaluation classifier.")


def settings_key(base: Request) -> str:
    """What a comparison shares apart from w: a ladder answers only a picture with the same key."""
    return (f"{base.label}|{base.seed}|{base.num_samples}|{base.sampler.num_steps}|{base.sampler.sampler}|"
            f"{base.interval.sigma_lo:g}|{base.interval.sigma_hi:g}|{base.guide}")


def _w_text(method: str, weight: float) -> str:
    """A method's w as its row shows it ("" for unguided, which has none)."""
    return "" if method == "unguided" else f"w = {weight:g}"


def cell(method: str, weight: float, run: FinishedRun, k: int, selected: int | None) -> str:
    verdict = run.verdicts()[k]
    mark, meaning, realism = VERDICT[verdict]
    predicted, confidence = int(run.probs[k].argmax()), float(run.probs[k].max())
    w = "" if method == "unguided" else f", w = {weight:g}"
    alt = (f"sample {k + 1}, {GUIDANCE[method].title}{w}: read as {predicted} ({confidence:.0%}), {meaning}"
           + ("" if verdict == "unrealistic" else f", {realism}"))
    classes = f"gl-cell gl-{verdict}" + (" gl-selected" if k == selected else "")
    return (f'<button class="{classes}" data-sample="{k}" title="{html.escape(alt)}. Follow its trajectory.">'
            f'<img src="{render.data_uri(run.pixels[k])}" alt="{html.escape(alt)}">'
            f'<span class="gl-verdict" aria-hidden="true">{mark} {predicted}</span></button>')


def row(method: str, weight: float, run: FinishedRun, selected: int | None = None) -> str:
    columns = min(len(run.pixels), COLUMNS)
    cells = "".join(cell(method, weight, run, k, selected) for k in range(len(run.pixels)))
    name = html.escape(GUIDANCE[method].short_title)
    return (f'<div class="gl-row" data-method="{method}" data-w="{weight:g}" style="--gl-colour: '
            f'{GUIDANCE[method].colour}"><div class="gl-label"><span class="gl-name">{name}</span>'
            f'<span class="gl-meta">{" · ".join(filter(None, (_w_text(method, weight), f"{run.accuracy():.0%} correct")))}'
            f'</span></div>'
            f'<div class="gl-cells" style="--gl-columns: {columns}">{cells}</div></div>')


def _frame(runs_count: int, n: int, body: str, attributes: str, note: str) -> str:
    columns = min(n, COLUMNS)
    head = "".join(f'<span class="gl-col">{k + 1}</span>' for k in range(columns))
    tile_rows = runs_count * -(-n // columns)             # the CSS keeps this many rows of digits on one screen
    return (f'<div class="gl-comparison" data-samples="{n}"{attributes} style="--gl-rows: {tile_rows}">'
            f'<div class="gl-row gl-head" aria-hidden="true"><div class="gl-label"><span class="gl-meta">sample →'
            f'</span></div><div class="gl-cells" style="--gl-columns: {columns}">{head}</div></div>{body}'
            f'<div class="gl-legend">{LEGEND} {html.escape(note)}</div></div>')


def comparison_html(runs: dict[str, FinishedRun], selected: int | None = None, note: str = "",
                    runs_computed: int | None = None, base: Request | None = None) -> str:
    """The finished comparison; `base` tags it with its settings key (the page's ladder checks it)."""
    n = len(next(iter(runs.values())).pixels)
    body = "".join(row(method, run.request.weight, run, selected) for method, run in runs.items())
    attributes = ("" if runs_computed is None else f' data-runs-computed="{runs_computed}"') + \
        ("" if base is None else f' data-key="{html.escape(settings_key(base))}"')
    return _frame(len(runs), n, body, attributes, note)


def forming_html(methods: list[str], weights: dict[str, float], previews: dict[str, tuple[int, float, np.ndarray]],
                 total_steps: int, n: int, what: str = "x0 estimate") -> str:
    """A comparison still sampling: each tile is that sample's current estimate (`previews`: method -> (step,
    sigma, (n, 28, 28) uint8)); a method not yet started shows empty tiles."""
    body = []
    columns = min(n, COLUMNS)
    for method in methods:
        step, sigma, pixels = previews.get(method, (0, float("nan"), None))
        where = "waiting" if pixels is None else "done" if sigma == 0 else \
            f"step {step + 1}/{total_steps} · σ {sigma:.2g}"
        cells = "".join(
            f'<span class="gl-cell gl-forming"><img src="{render.data_uri(pixels[k])}" alt="sample {k + 1}, '
            f'{html.escape(GUIDANCE[method].title)}: {what} at step {step} of {total_steps}"></span>'
            if pixels is not None else '<span class="gl-cell gl-forming gl-empty" aria-hidden="true"></span>'
            for k in range(n))
        body.append(f'<div class="gl-row" data-method="{method}" style="--gl-colour: {GUIDANCE[method].colour}">'
                    f'<div class="gl-label"><span class="gl-name">{html.escape(GUIDANCE[method].short_title)}'
                    f'</span><span class="gl-meta">{_w_text(method, weights.get(method, 0.0))}</span>'
                    f'<span class="gl-meta">{where}</span></div>'
                    f'<div class="gl-cells" style="--gl-columns: {columns}">{"".join(cells)}</div></div>')
    return _frame(len(methods), n, "".join(body), ' data-forming="true" aria-busy="true"',
                  f"Forming: every tile shows its sample's current {what}.")


def ladder_payload(base: Request, runs: dict[tuple[str, float], FinishedRun]) -> str:
    """Every (method, w) row of the ladder, rendered, in one hidden element the page reads: moving w to a ladder
    value then swaps rows in the page itself (assets/lab.js), with no request."""
    rows: dict[str, dict[str, str]] = {}
    for (method, weight), run in runs.items():
        rows.setdefault(method, {})[f"{weight:g}"] = row(method, weight, run)
    data = json.dumps({"key": settings_key(base), "rows": rows}, separators=(",", ":"))
    return f'<div class="gl-ladder-data" hidden data-ladder="{html.escape(data, quote=True)}"></div>'
