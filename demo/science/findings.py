"""What the stored evaluation (assets/evaluation.json, `python -m demo.science.evaluate`) says about each method's w:
its best-FID w (the app's per-method default) and where it degrades (FID twice its best), for the UI's hints.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from demo.engine.config import ASSETS_DIR, GUIDES, WEIGHTS_DIR
from demo.engine.guidance import GUIDANCE, uses_guide

EVALUATION = ASSETS_DIR / "evaluation.json"
FID = "fid_classifier_features"


@dataclass(frozen=True)
class MeasuredRange:
    method: str
    best_weight: float              # w of the lowest FID on the evaluated grid
    best_fid: float
    degrades_beyond: float | None   # smallest w above the best where FID reaches 2x its best (interpolated)
    evaluated_up_to: float



def degradation_point(points: list[tuple[float, float]], best_weight: float, best_fid: float) -> float | None:
    """First w > best_weight where the piecewise-linear FID(w) reaches 2 * best_fid, or None."""
    above = [(w, f) for w, f in sorted(points) if w >= best_weight]
    for (w0, f0), (w1, f1) in zip(above, above[1:]):
        if f1 >= 2 * best_fid:
            return w0 + (w1 - w0) * (2 * best_fid - f0) / (f1 - f0) if f1 != f0 else w1
    return None


def sweep_rows(rows: list[dict]) -> list[dict]:
    """The evaluation's sweep proper: the methods at their default options and guide (no floor, no variants)."""
    return [r for r in rows if r["method"] in GUIDANCE and not r.get("variant") and not r.get("guide")]


@functools.lru_cache(maxsize=4)
def ranges(path: Path = EVALUATION) -> dict[str, MeasuredRange]:
    """Per guided method, from the stored evaluation; {} if there is none."""
    if not path.exists():
        return {}
    rows = sweep_rows(json.loads(path.read_text())["rows"])
    unguided = [(r["w"], r[FID]) for r in rows if r["method"] == "unguided"]
    out = {}
    for method in {r["method"] for r in rows} - {"unguided"}:
        points = unguided + [(r["w"], r[FID]) for r in rows if r["method"] == method]
        best_weight, best_fid = min(points, key=lambda p: p[1])
        out[method] = MeasuredRange(method, best_weight, best_fid,
                                    degradation_point(points, best_weight, best_fid), max(w for w, _ in points))
    return out


def default_weight(method: str) -> float:
    """The measured best-FID w, or the method's own default where none is stored."""
    measured = ranges().get(method)
    return measured.best_weight if measured else GUIDANCE[method].default_weight


@functools.lru_cache(maxsize=8)
def guide_range(key: str, folder: Path = WEIGHTS_DIR) -> MeasuredRange | None:
    """Autoguidance's measured range with one of the offered guides (config.GUIDES key), from the guide study
    numbers stored in its weights JSON (python -m demo.science.guide_study ship); None where there are none."""
    guide = next((g for g in GUIDES if g.key == key), None)
    path = folder / f"{guide.file}.json" if guide else None
    if path is None or not path.exists():
        return None
    study = json.loads(path.read_text()).get("study")
    if not study:
        return None
    return MeasuredRange("autoguidance", study["best_w"], study["best_fid"], study["fid_doubles_at_w"],
                         max(study["settings"]["weights"]))


def method_range(method: str, guide: str | None = None, folder: Path | None = None) -> MeasuredRange | None:
    """A method's measured range; for a method that uses a guide other than the default, that guide's (from the
    weights folder the app loaded, `folder`, by default weights/)."""
    if guide not in (None, GUIDES[0].key) and uses_guide(method):
        return guide_range(guide, folder or WEIGHTS_DIR) if method == "autoguidance" else None
    return ranges().get(method)
