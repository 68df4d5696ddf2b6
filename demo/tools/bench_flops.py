"""The bench's FLOPs section: what a comparison costs (demo/science/flops.py's FlopCount: torch's formulas for
matmuls and convolutions and their backward passes; FlopCounterMode itself refuses the gradient of classifier
guidance), and the time it would take at the machine's measured matmul peak (the floor).

Counted for the app's default comparison (its settings read from demo/ui/form.py when the bench runs) and for
the classic settings it replaced (32 DDIM steps, no guidance interval, the p(c|x) probe at every step), each
three ways:
    served       what the app's Service samples for it (recording.run_methods, the scheduler's Recorder: its
                 probe as the app records it, and the evaluation classifier's verdicts on the final samples)
    probe_off    the sampling alone (pipeline.generate_together, record=False)
    probe_on     the sampling with the p(c|x) probe at every step (record=True)
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from demo.engine import batching, networks
from demo.engine.config import IMAGE_SHAPE, Interval
from demo.engine.guidance import METHODS
from demo.engine.pipeline import Models, Request, generate_together
from demo.science.flops import FlopCount
from demo.serving import recording
from demo.serving.runs import cache_key, comparison_requests
from demo.tools.timing import Clock

CLASSIC_STEPS = 32
GOAL_GFLOP = 30.0           # issue 21: a default comparison at a quarter of the classic ~118 GFLOP


def comparison_keys(base: Request, weights: dict[str, float]) -> list[Request]:
    """The runs the Service samples for a comparison (identical ones once, as the cache keys them)."""
    return list(dict.fromkeys(cache_key(r) for r in comparison_requests(base, METHODS, weights)))


def classic(base: Request) -> Request:
    """The same comparison at the classic settings: 32 DDIM steps over every noise level."""
    return replace(base, sampler=replace(base.sampler, num_steps=CLASSIC_STEPS, sampler="ddim"), interval=Interval())


def interval(request: Request) -> list[float | None]:
    """[sigma_lo, sigma_hi] for JSON (None: no upper bound)."""
    hi = request.interval.sigma_hi
    return [request.interval.sigma_lo, hi if math.isfinite(hi) else None]


def per_row(network: nn.Module, grad: bool) -> int:
    """FLOPs of one row through `network` (FlopCount on a batch of one): a denoiser's or the evaluation
    classifier's forward, the noisy classifier's forward or, with `grad`, forward and backward (batching.classify)."""
    device = next(network.parameters()).device
    x, label = torch.zeros(1, *IMAGE_SHAPE, device=device), torch.zeros(1, dtype=torch.long, device=device)
    with FlopCount() as counter, torch.no_grad():
        if isinstance(network, networks.Denoiser):
            network(x, 1.0, label)
        elif isinstance(network, networks.NoisyClassifier):
            batching.classify(network, x, 1.0, label, grad)
        else:
            network(x)
    return counter.total


def count(models: Models, keys: list[Request]) -> dict[str, int]:
    """FLOPs of these runs, the three ways of the module docstring: each run for real, the rows every network
    was given counted (timing.Clock), times that network's FLOPs per row (per_row: every network call is per
    row, so this equals a FlopCount of the whole run, without its overhead on every operation)."""
    runs = {"served": lambda: recording.run_methods(models, keys),
            "probe_off": lambda: list(generate_together(models, keys, record=False)),
            "probe_on": lambda: list(generate_together(models, keys, record=True))}
    costs, out = {}, {}
    for name, run in runs.items():
        clock = Clock()
        with clock.installed():
            run()
        for key in clock.rows:
            if key not in costs:
                costs[key] = per_row(*key)
        out[name] = sum(rows * costs[key] for key, rows in clock.rows.items())
    return out


def flops_section(models: Models, base: Request, weights: dict[str, float], peak_gflops: float) -> dict:
    """GFLOP of the default and the classic comparison, the floor seconds at the peak, and their ratio."""
    out = {}
    for name, settings in (("default", base), ("classic", classic(base))):
        counted = count(models, comparison_keys(settings, weights))
        out[name] = {**{f"{k}_gflop": v / 1e9 for k, v in counted.items()},
                     "floor_seconds": counted["served"] / 1e9 / peak_gflops,
                     "steps": settings.sampler.num_steps, "sampler": settings.sampler.sampler,
                     "interval": interval(settings)}
    out["classic_to_default"] = out["classic"]["probe_on_gflop"] / out["default"]["served_gflop"]
    out["goal_gflop"] = GOAL_GFLOP
    return out
