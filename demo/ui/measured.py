"""What the lessons quote, read from our own measurements (demo/ui/lessons.py writes the words around them):
the stored evaluation (assets/evaluation.json), each autoguidance guide's study block (weights/<guide>.json),
the solver study (assets/solver_study.json, optional), the samples the lessons follow
(assets/lesson_samples.json, `python -m demo.science.lesson_samples`) and the 2-D lab's exact numbers at the
lesson's w (demo.toy.lab, deterministic). Nothing here is typed in by hand: change a file, the lessons follow.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from demo.engine.config import ASSETS_DIR, GUIDES, LIMITS, WEIGHTS_DIR
from demo.engine.guidance import GUIDANCE
from demo.science import findings

EXACT_W = 8.0              # the 2-D lab lesson's w: large, where CFG and the tilted density part ways


@dataclass(frozen=True)
class Measured:
    """`evaluation`: (method, w) -> row of the stored evaluation's sweep (unguided at w = 0); `settings`: its
    settings; `interval_rows`: rows measured with a guidance interval ("interval": [sigma_lo, sigma_hi]);
    `default_w`: each guided method's default w (findings.default_weight); `guides`: guide key -> study block;
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
    stored = _json(assets / "evaluation.json") or {"rows": [], "settings": {}}
    interval = tuple(r for r in stored["rows"] if r.get("interval"))
    sweep = findings.sweep_rows([r for r in stored["rows"] if not r.get("interval")])
    guides = {}
    for guide in GUIDES:
        study = (_json(weights / f"{guide.file}.json") or {}).get("study")
        if study:
            guides[guide.key] = study
    return Measured(evaluation={(r["method"], float(r["w"])): r for r in sweep}, settings=stored["settings"],
                    interval_rows=interval, default_w={m: findings.default_weight(m) for m in GUIDANCE
                                                       if m != "unguided"},
                    guides=guides, samples=_json(assets / "lesson_samples.json") or {},
                    solver=_json(assets / "solver_study.json"), toy=toy_moments(EXACT_W))


def toy_moments(weight: float) -> dict:
    """The 2-D lab at its default mixture, class and points, at `weight`: classifier-free guidance's sample mean
    and sd against those of the exact tilted density q_w, and how far the unguided points' mean lies from q_w's."""
    from demo.toy import lab
    from demo.ui.form import TOY
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
