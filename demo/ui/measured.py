"""What the lessons quote, read from our own measurements (demo/ui/lessons.py writes the words around them):
the stored evaluation of the app's default preset (assets/evaluation.json: the methods' sweep, the other guides,
guidance at high / low noise only), each autoguidance guide's study block (weights/<guide>.json),
the solver study (assets/solver_study.json, optional), the samples the lessons follow
(assets/lesson_samples.json, `python -m demo.science.lesson_samples`) and the 2-D lab's exact numbers at the
lesson's w (demo.toy.lab, deterministic). Nothing here is typed in by hand: change a file, the lessons follow.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from demo.engine.config import ASSETS_DIR, GUIDES, LIMITS, PRESETS, WEIGHTS_DIR
from demo.engine.guidance import GUIDANCE
from demo.science import findings
from demo.ui.form import COMPARE, TOY

EXACT_W = 8.0              # the 2-D lab lesson's w: large, where CFG and the tilted density part ways
GUIDE_W = 3.0              # the guide lesson's w ("FID at w = 3 over the best", as the guide study reports it)
INTERVAL_VARIANT = re.compile(r"^interval .*\(([\d.]+), ([\d.]+|inf)\]$")


@dataclass(frozen=True)
class Measured:
    """`evaluation`: (method, w) -> row of the stored evaluation's sweep (unguided at w = 0); `settings`: its
    settings; `interval_rows`: rows measured with a guidance interval ("interval": [sigma_lo, sigma_hi]);
    `default_w`: each guided method's default w (findings.default_weight); `guides`: guide key -> guide_numbers;
    `samples`: lesson_samples.json ({} if absent); `solver`: solver_study.json or None; `toy`: the 2-D lab's
    moments at EXACT_W (toy_moments)."""
    evaluation: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    interval_rows: tuple = ()
    default_w: dict = field(default_factory=dict)
    guides: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    solver: dict | None = None
    toy: dict = field(default_factory=dict)

    @classmethod
    def load(cls, assets: Path = ASSETS_DIR, weights: Path | None = None) -> Measured:
        return _load(assets, weights or WEIGHTS_DIR)

    def row(self, method: str, w: float) -> dict | None:
        """The evaluation's point; w = 0 is the unguided row for every method."""
        return self.evaluation.get(("unguided", 0.0) if w == 0 else (method, float(w)))

    def weights(self, method: str) -> list[float]:
        return sorted(w for m, w in self.evaluation if m == method)

    def evaluated_with(self) -> str:
        """How the stored evaluation was measured, in words."""
        s = self.settings
        lo, hi = (s.get("interval") or [0.0, None])[:2]
        guided = "" if not lo and (hi is None or hi >= LIMITS.sigma_max) else f", guidance for {lo:g} < σ ≤ {hi:g}"
        return (f"{s.get('samples_per_point', '?')} samples × {len(s.get('seeds', [0]))} seeds, "
                f"{s.get('steps', '?')} {str(s.get('sampler', 'ddim')).upper()} steps{guided}")

    def sample_settings(self) -> dict:
        """The Compare fields the followed samples were found with (lesson_samples.json; no interval: all steps)."""
        s = self.samples.get("settings", {})
        lo, hi = (s.get("interval") or [0.0, None])[:2]
        return {"num_steps": s.get("num_steps", COMPARE["num_steps"].default), "sampler": s.get("sampler", "ddim"),
                "num_samples": s.get("num_samples", COMPARE["num_samples"].default), "sigma_lo": lo,
                "sigma_hi": LIMITS.sigma_max if hi is None else min(hi, LIMITS.sigma_max)}

    def interval_pair(self) -> tuple[dict, dict] | None:
        """Classifier-free guidance at one w, measured guided only above a noise level and only below it."""
        rows = [r for r in self.interval_rows if r["method"] == "cfg"]
        for high in (r for r in rows if r["interval"][0] > 0 and r["interval"][1] >= LIMITS.sigma_max):
            for low in (r for r in rows if r["interval"][0] == 0 and r["interval"][1] == high["interval"][0]):
                if low["w"] == high["w"]:
                    return high, low
        return None


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


@functools.lru_cache(maxsize=4)
def _load(assets: Path, weights: Path) -> Measured:
    stored = _json(assets / PRESETS[0].evaluation) or {"rows": [], "settings": {}}
    rows = stored["rows"]
    sweep = findings.sweep_rows([r for r in rows if not r.get("interval")])
    return Measured(evaluation={(r["method"], float(r["w"])): r for r in sweep}, settings=stored["settings"],
                    interval_rows=interval_rows(rows), guides=guide_numbers(rows, weights),
                    default_w={m: findings.default_weight(m) for m in GUIDANCE if m != "unguided"},
                    samples=_json(assets / "lesson_samples.json") or {},
                    solver=_json(assets / "solver_study.json"), toy=toy_moments(EXACT_W))


def interval_rows(rows: list[dict]) -> tuple[dict, ...]:
    """The evaluation's rows guided over part of the noise levels, each with its "interval": [sigma_lo, sigma_hi]
    (read from the row, or from its variant: "interval high noise only (1, inf]")."""
    out = []
    for r in rows:
        if r.get("interval"):
            out.append(r)
        elif found := INTERVAL_VARIANT.match(r.get("variant") or ""):
            out.append({**r, "interval": [float(found[1]), min(float(found[2]), LIMITS.sigma_max)]})
    return tuple(out)


def guide_numbers(rows: list[dict], weights: Path) -> dict[str, dict]:
    """Per guide: best w and FID, FID at GUIDE_W over the best, where FID doubles, from the stored evaluation's
    autoguidance rows with that guide (the app's default preset) or else the guide study in its weights JSON; and
    how it was made (parameters, iterations) from that JSON."""
    sweep = findings.sweep_rows(rows)
    unguided = [r for r in sweep if r["method"] == "unguided"]
    out = {}
    for guide in GUIDES:
        study = (_json(weights / f"{guide.file}.json") or {}).get("study") or {}
        mine = [r for r in (sweep if guide is GUIDES[0] else rows) if r["method"] == "autoguidance"
                and (guide is GUIDES[0] or r.get("guide") == guide.key)]
        if mine and unguided:
            span = findings.measured_range("autoguidance", unguided + mine)
            at = next((r for r in mine if r["w"] == GUIDE_W), None)
            numbers = {"best_w": span.best_weight, "best_fid": span.best_fid, "fid_doubles_at_w": span.degrades_beyond,
                       "fid_w3_over_best": at[findings.FID] / span.best_fid if at else None,
                       "weights": [r["w"] for r in mine], "source": "evaluation"}
        elif study:
            numbers = {**{k: study.get(k) for k in ("best_w", "best_fid", "fid_doubles_at_w", "fid_w3_over_best")},
                       "weights": study["settings"]["weights"], "source": "guide study"}
        else:
            continue
        out[guide.key] = {**numbers, "parameters": study.get("parameters"), "iterations": study.get("iterations")}
    return out


def toy_moments(weight: float) -> dict:
    """The 2-D lab at its default mixture, class and points, at `weight`: classifier-free guidance's sample mean
    and sd against those of the exact tilted density q_w, and how far the unguided points' mean lies from q_w's."""
    from demo.toy import lab
    v = TOY.defaults(weight=weight)
    result = lab.run_toy(v["preset"], v["label"], weight, v["num_steps"], v["num_samples"], v["seed"],
                         methods=("unguided", "cfg"))
    xx, yy, _, tilted = lab.density_grid(result.mixture, v["label"], weight)
    target_mean, target_std = lab.grid_moments(xx, yy, tilted)
    cfg, unguided = result.finals["cfg"], result.finals["unguided"]
    return {"weight": weight, "points": v["num_samples"],
            "cfg_std": [round(float(s), 3) for s in cfg.std(0)],
            "target_std": [round(float(s), 3) for s in target_std],
            "cfg_distance": round(float(np.linalg.norm(cfg.mean(0) - target_mean)), 3),
            "unguided_distance": round(float(np.linalg.norm(unguided.mean(0) - target_mean)), 3)}
