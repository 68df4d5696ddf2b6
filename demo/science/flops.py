"""FLOPs of a network call and of a whole comparison, counted with torch.utils.flop_counter's formulas (matmuls,
convolutions and their backward passes; elementwise work is not counted, as in the issue's 118 GFLOP).

A comparison is the app's default request set: every method at its default w, 8 samples of one class, sampled
together (pipeline.generate_together), with or without the trajectory record (the p(c | x) probe at every step).
Its cost is a + b * steps (every step costs the same; the record adds a final probe) and proportional to the
samples (every network call is per row), so it is counted for one sample at 2 and 3 steps and scaled
(tests/test_size_study.py checks both against a direct count).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from demo.engine.config import IMAGE_SHAPE, SamplerConfig
from demo.engine.guidance import GUIDANCE, METHODS
from demo.engine.pipeline import Models, Request, generate_together

COMPARISON_SAMPLES = 8             # per method: the app's default comparison


class FlopCount(TorchDispatchMode):
    """FlopCounterMode's formulas and decompositions, without its module tracker (whose backward hooks refuse the
    torch.autograd.grad of classifier guidance)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket not in flop_registry:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def per_sample(net: nn.Module) -> int:
    """FLOPs of one denoiser call on one sample (FlopCounterMode, as the issue's 48.4 MFLOP)."""
    x = torch.zeros(1, *IMAGE_SHAPE)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x, 1.0, torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops()


def count_comparison(models: Models, steps: int, record: bool, samples: int = COMPARISON_SAMPLES,
                     label: int = 3) -> int:
    """FLOPs of a comparison of `samples` samples per method at `steps` steps, counted while it runs (on the CPU)."""
    requests = [Request(label=label, method=m, weight=GUIDANCE[m].default_weight, num_samples=samples,
                        sampler=SamplerConfig(num_steps=steps)) for m in METHODS]
    with FlopCount() as counter:
        for _ in generate_together(models, requests, record=record):
            pass
    return counter.total


@dataclass(frozen=True)
class ComparisonCost:
    """FLOPs of a default comparison: fixed + per_step * steps, with and without the trajectory record."""
    per_step: int
    fixed: int
    per_step_recorded: int
    fixed_recorded: int

    @classmethod
    def of(cls, models: Models) -> ComparisonCost:
        """Counted on one sample per method, times COMPARISON_SAMPLES (every network call is per row)."""
        plain = [COMPARISON_SAMPLES * count_comparison(models, n, record=False, samples=1) for n in (2, 3)]
        recorded = [COMPARISON_SAMPLES * count_comparison(models, n, record=True, samples=1) for n in (2, 3)]
        return cls(plain[1] - plain[0], 3 * plain[0] - 2 * plain[1],
                   recorded[1] - recorded[0], 3 * recorded[0] - 2 * recorded[1])

    def gflop(self, steps: int, record: bool = False) -> float:
        if record:
            return (self.fixed_recorded + self.per_step_recorded * steps) / 1e9
        return (self.fixed + self.per_step * steps) / 1e9
