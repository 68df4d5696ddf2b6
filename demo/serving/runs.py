"""The runs behind a request and what they cost: which requests give identical samples (one cache key), the
runs of a comparison or a sweep, and the budget every request is costed against (config.BUDGET default
comparisons; operators: --budget).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from demo.engine.config import GUIDES, PRESETS, Interval
from demo.engine.guidance import METHODS, uses_guide
from demo.engine.pipeline import Request
from demo.engine.validation import RequestError

SWEEP_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def cache_key(request: Request) -> Request:
    """Runs that must give identical samples share a key: w = 0 (or 'unguided') ignores method, interval and
    guide; a method without a guide ignores the guide."""
    if request.weight == 0 or request.method == "unguided":
        return replace(request, method="unguided", weight=0.0, interval=Interval(), guide=GUIDES[0].key)
    if not uses_guide(request.method):
        return replace(request, guide=GUIDES[0].key)
    return request


def comparison_requests(base: Request, methods: Sequence[str] = METHODS,
                        weights: dict[str, float] | None = None) -> list[Request]:
    """One request per method: the base's settings, at the method's own w if `weights` gives one."""
    return [replace(base, method=m, weight=(weights or {}).get(m, base.weight)) for m in methods]


def cost(requests: Sequence[Request]) -> int:
    """Denoiser rows x steps of these runs (identical runs counted once): what they cost to sample."""
    return sum(r.nfe * r.num_samples for r in dict.fromkeys(cache_key(r) for r in requests))


REFERENCE_COST = cost(comparison_requests(        # a default comparison: the app's default preset, 8 samples
    Request(label=0, weight=1.0, num_samples=8, sampler=PRESETS[0].sampler, interval=PRESETS[0].interval), METHODS))


def times_default(requests: Sequence[Request]) -> float:
    """What these runs cost, in default comparisons."""
    return cost(requests) / REFERENCE_COST


def shown_times(times: float) -> str:
    """A cost for a message, rounded up to 2 decimals: 8.03x is never shown as the 8x it exceeds."""
    return f"{math.ceil(times * 100 - 1e-9) / 100:.2f}x"


def check_budget(requests: Sequence[Request], budget: float, what: str) -> None:
    """RequestError, before anything is sampled, if the runs cost more than `budget` default comparisons."""
    if (times := times_default(requests)) > budget:
        raise RequestError(f"This {what} would cost {shown_times(times)} a default comparison; this server allows "
                           f"{budget:g}x per request. Use fewer samples or steps (an operator can raise the "
                           f"limit with --budget).")


def slices(keys: Sequence[Request], budget: float, what: str) -> list[list[Request]]:
    """Runs in consecutive groups that each cost at most `budget` (a run that alone costs more: RequestError)."""
    groups: list[list[Request]] = []
    for key in keys:
        check_budget([key], budget, what)
        if not groups or times_default([*groups[-1], key]) > budget:
            groups.append([])
        groups[-1].append(key)
    return groups


def sweep_requests(base: Request, methods: Sequence[str] = METHODS[1:],
                   weights: Sequence[float] = SWEEP_WEIGHTS) -> list[Request]:
    """Every method at every w (the sweep, or the w ladder), in (method, w) order."""
    return [replace(base, method=m, weight=w) for m in methods for w in weights]
