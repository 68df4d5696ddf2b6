"""The steps/solver study: `python -m demo.science.solver_study [--device cuda] [--workers N]`.

A lever that makes sampling cheaper (fewer steps with a higher-order solver) is kept only if, at the operating
points below, the evaluation classifier's accuracy and FID stay within the seed-to-seed noise of today's default
(DDIM, 32 steps). Solvers: DDIM (Euler on the probability-flow ODE), DPM-Solver++(2M) and (3M) (Lu et al. 2022;
demo.engine.samplers), each at 8, 10, 12 and 16 steps, 3 seeds of 250 samples per point. It runs on the shipped
network here and, in the size study, on each candidate network at the steps its FLOP budget allows
(demo.science.flop_study runs both, in parallel, and writes solver_study.json).
"""
from __future__ import annotations

import argparse

from demo.engine.config import SamplerConfig

# (method, w): unguided; CFG at 1; autoguidance at 1 and 2; GFCG, GFCG + AG and classifier guidance at 2
POINTS = (("unguided", 0.0), ("cfg", 1.0), ("autoguidance", 1.0), ("autoguidance", 2.0), ("gfcg", 2.0),
          ("gfcg_ag", 2.0), ("classifier", 2.0))
REFERENCE = SamplerConfig(num_steps=32)                       # today's default: DDIM, 32 steps
SOLVERS = ("ddim", "dpmpp_2m", "dpmpp_3m")
STEPS = (8, 10, 12, 16)
SETTINGS = (REFERENCE, *(SamplerConfig(num_steps=n, sampler=s) for s in SOLVERS for n in STEPS))
SEEDS = (0, 1000, 2000)


def setting_name(sampler: SamplerConfig) -> str:
    """'dpmpp_3m:12': the solver and its steps (the other SamplerConfig fields stay at their defaults)."""
    return f"{sampler.sampler}:{sampler.num_steps}"


def parse_setting(name: str) -> SamplerConfig:
    sampler, steps = name.split(":")
    return SamplerConfig(num_steps=int(steps), sampler=sampler)


def within_noise(a: dict, b: dict, keys: tuple[str, ...] = ("fid", "accuracy")) -> bool:
    """Two points agree if every metric differs by at most 2 sd (the larger of the two seed-to-seed sds)."""
    return all(abs(a[k] - b[k]) <= 2 * max(a[f"{k}_sd"], b[f"{k}_sd"], 1e-9) for k in keys)


def verdict(points: dict[tuple[str, float], dict], reference: dict[tuple[str, float], dict]) -> bool | None:
    """Whether a setting holds at every operating point against the reference (None: a point is missing)."""
    if any(p not in points or p not in reference for p in POINTS):
        return None
    return all(within_noise(points[p], reference[p]) for p in POINTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _, rest = parser.parse_known_args()
    from demo.science import flop_study
    flop_study.main(["run", "--parts", "solver", *rest])


if __name__ == "__main__":
    main()
