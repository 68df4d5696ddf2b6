"""What the stored evaluation (assets/evaluation.json, `python -m demo.science.evaluate`: the app's default preset)
says about each method's w: its best FID, the app's default w (the smallest w whose FID is within seed noise of
the best: 2 sd, as the studies call a tie) and where it degrades (FID twice its best), for the UI's hints.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from demo.engine.config import ASSETS_DIR, GUIDES, PRESETS, WEIGHTS_DIR
from demo.engine.guidance import GUIDANCE, uses_guide

EVALUATION = ASSETS_DIR / PRESETS[0].evaluation
FID = "fid_classifier_features"


@dataclass(frozen=True)
class MeasuredRange:
    method: str
    best_weight: float              # w of the lowest FID on the evaluated grid
    best_fid: float
    degrades_beyond: float | None   # smallest w above the best where FID reaches 2x its best (interpolated)
    evaluated_up_to: float
    default_weight: float | None = None   # smallest w whose FID is within 2 sd of the best (the app's default)



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


def measured_range(method: str, rows: list[dict]) -> MeasuredRange:
    """The range of one method's w from its rows and the unguided one (w = 0)."""
    points = sorted((r["w"], r[FID], r.get(FID + "_sd", 0.0)) for r in rows)
    best_weight, best_fid, best_sd = min(points, key=lambda p: p[1])
    tie = next(w for w, fid, sd in points if fid - best_fid <= 2 * max(sd, best_sd))
    pairs = [(w, fid) for w, fid, _ in points]
    return MeasuredRange(method, best_weight, best_fid, degradation_point(pairs, best_weight, best_fid),
                         max(w for w, _ in pairs), tie)


@functools.lru_cache(maxsize=4)
def ranges(path: Path = EVALUATION) -> dict[str, MeasuredRange]:
    """Per guided method (at its default guide), and autoguidance per other guide keyed ("autoguidance", guide),
    from the stored evaluation; {} if there is none."""
    if not path.exists():
        return {}
    rows = json.loads(path.read_text())["rows"]
    sweep = sweep_rows(rows)
    unguided = [r for r in sweep if r["method"] == "unguided"]
    out: dict = {method: measured_range(method, unguided + [r for r in sweep if r["method"] == method])
                 for method in {r["method"] for r in sweep} - {"unguided"}}
    for guide in {r["guide"] for r in rows if r.get("guide") and r["method"] == "autoguidance"}:
        with_guide = [r for r in rows if r["method"] == "autoguidance" and r.get("guide") == guide]
        out["autoguidance", guide] = measured_range("autoguidance", unguided + with_guide)
    return out


def default_weight(method: str) -> float:
    """The app's default w of a method: the smallest w whose FID is within seed noise of its best (the method's
    own default where nothing is stored)."""
    measured = ranges().get(method)
    if measured is not None and measured.default_weight is not None:
        return measured.default_weight
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
        if method != "autoguidance":
            return None
        return ranges().get(("autoguidance", guide)) or guide_range(guide, folder or WEIGHTS_DIR)
    return ranges().get(method)
