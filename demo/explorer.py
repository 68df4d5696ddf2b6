"""What the app does, without the app: turn widget values into requests, run (cached) comparisons and
sweeps, and condense trajectories for display. app.py lays out widgets and calls these; views.py draws.
"""
from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import numpy as np
import torch

from . import render
from .config import CLASS_NAMES, Interval, SamplerConfig
from .guidance import GUIDANCE, METHODS
from .metrics import evaluate_images
from .pipeline import Models, Request, generate_together
from .validation import RequestError, shown

T = TypeVar("T")
NUM_FRAMES = 41            # trajectory states kept per run (evenly spaced, first and last included)
SWEEP_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
LADDER = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)   # sampled ahead: instant w
CACHE_BYTES = 400 * 2**20  # finished runs kept (a run of 8 samples x 32 steps with its trajectory: ~0.5 MB)
MAX_ROWS = 512             # denoiser rows per batched call when runs are sampled together (bounds memory)
Progress = Generator[tuple[int, int], None, T]


class Live(Generic[T]):
    """A computation that reports progress: iterating it yields (steps done, total) after every sampling step,
    so a caller can show progress or stop between steps; afterwards `result` holds what it computed."""

    def __init__(self, steps: Progress[T]):
        self.steps, self.result, self.done = steps, None, False

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.done:
            raise RuntimeError("a Live computation runs once")
        self.result = yield from self.steps
        self.done = True

    def run(self) -> T:
        """Run to the end without watching; the result."""
        for _ in self:
            pass
        return self.result


def blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_request(label, weight, num_steps, sampler, num_samples, seed, sigma_lo=None, sigma_hi=None,
                  method: str = "unguided") -> Request:
    """Widget (or API) values -> a Request (which validates them: RequestError with a clear message).
    The class may be given by name; an empty interval bound means no bound."""
    if isinstance(label, str) and label in CLASS_NAMES:
        label = CLASS_NAMES.index(label)
    interval = Interval(0.0 if blank(sigma_lo) else sigma_lo, math.inf if blank(sigma_hi) else sigma_hi)
    return Request(label=label, method=method, weight=weight, num_samples=num_samples, seed=seed,
                   sampler=SamplerConfig(num_steps=num_steps, sampler=sampler), interval=interval)


WEIGHT_MODES = ("same", "own")      # one w for every method, or each method at its own w


def parse_settings(label, mode, weight, method_weights: Sequence, num_steps, sampler, num_samples, seed,
                   sigma_lo=None, sigma_hi=None) -> tuple[Request, dict[str, float]]:
    """The Compare tab's widgets -> (base request, w per guided method). In "own" mode each guided method
    takes its value from `method_weights` (in METHODS[1:] order); in "same" mode they all take `weight`."""
    if mode not in WEIGHT_MODES:
        raise RequestError(f"unknown w mode {shown(mode)}; choose one of {', '.join(WEIGHT_MODES)}")
    base = parse_request(label, weight, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi)
    if mode == "same":
        return base, {m: base.weight for m in METHODS[1:]}
    if len(method_weights) != len(METHODS) - 1:
        raise RequestError(f"expected one w per guided method ({len(METHODS) - 1}), got {len(method_weights)}")
    weights = {m: replace(base, method=m, weight=w).weight for m, w in zip(METHODS[1:], method_weights)}
    return base, weights


@dataclass(frozen=True)
class MethodRun:
    """A finished run, condensed for display: final samples, their evaluation, and a few trajectory frames."""
    request: Request
    samples: torch.Tensor          # (B, 1, 28, 28) in [-1, 1]
    pixels: np.ndarray             # (B, 28, 28) uint8, the samples as shown
    probs: torch.Tensor            # (B, 10) evaluation-classifier probabilities
    features: torch.Tensor         # (B, 128) evaluation-classifier features
    realism: torch.Tensor          # (B,) distance to the real digits / their k-NN radius: > 1 is off-manifold
    frame_steps: np.ndarray        # (F,) step indices of the kept frames
    frame_sigmas: np.ndarray       # (F,)
    frames_x: np.ndarray           # (F, B, 28, 28) uint8, x_t shown at unit scale
    frames_denoised: np.ndarray    # (F, B, 28, 28) uint8, guided x0 estimate
    p_target: np.ndarray           # (N + 1, B) p(target | x_t) from the noisy classifier
    guidance_norm: np.ndarray      # (N, B) ||clamp(D_w) - clamp(D)||: what guidance changed in the followed x0
    batch: int                     # id of the sampling batch this run was computed in (runs in lockstep share it)
    seconds: float                 # wall time of that batch

    @functools.cached_property
    def digit_uris(self) -> list[str]:
        """The samples as PNG data URIs (encoded once per run, on first display)."""
        return [render.data_uri(px) for px in self.pixels]

    @property
    def nbytes(self) -> int:
        """Approximate memory held by this run (for the cache's byte budget)."""
        return sum(a.nbytes for a in (self.frames_x, self.frames_denoised, self.p_target, self.guidance_norm,
                                      self.pixels)) + 5 * self.samples.numel() * 4

    def realistic(self) -> torch.Tensor:
        """(B,) bool: inside the real digits' manifold (metrics.Realism)."""
        return self.realism <= 1

    def verdicts(self) -> list[str]:
        """Per sample: "correct" (the target class and realistic), "wrong" (another class) or "unrealistic"
        (off the real digits' manifold, whatever the classifier calls it)."""
        pred = self.probs.argmax(dim=1)
        return ["unrealistic" if not real else "correct" if p == self.request.label else "wrong"
                for p, real in zip(pred.tolist(), self.realistic().tolist())]

    def captions(self) -> list[str]:
        conf, pred = self.probs.max(dim=1)
        marks = {"correct": "✓", "wrong": "✗", "unrealistic": "?"}
        return [f"{marks[v]} {p} · {c:.0%}{' · unrealistic' if v == 'unrealistic' else ''}"
                for v, p, c in zip(self.verdicts(), pred.tolist(), conf.tolist())]

    def accuracy(self) -> float:
        return (self.probs.argmax(1) == self.request.label).float().mean().item()

    def confidence(self) -> float:
        """Mean evaluation-classifier probability of the target class."""
        return self.probs[:, self.request.label].mean().item()


BATCH_IDS = itertools.count(1)


def run_methods_live(models: Models, requests: Sequence[Request], num_frames: int = NUM_FRAMES
                     ) -> Progress[list[MethodRun]]:
    """Sample requests together (one batched network call per round for all of them) and condense each:
    num_frames evenly spaced states plus every per-step scalar. Yields (steps done, total) after every step;
    returns the runs."""
    total = requests[0].sampler.num_steps + 1
    keep = set(np.unique(np.linspace(0, total - 1, min(num_frames, total)).round().astype(int)).tolist())
    frames: list[list] = [[] for _ in requests]
    p_target: list[list] = [[] for _ in requests]
    norms: list[list] = [[] for _ in requests]
    start = time.perf_counter()
    for steps in generate_together(models, requests, record=True):
        for k, step in enumerate(steps):
            p_target[k].append(step.p_target.cpu())
            if step.sigma > 0:
                norms[k].append(step.guidance_norm.cpu())
            if step.index in keep:
                frames[k].append((step.index, step.sigma, render.noisy_to_uint8(step.x, step.sigma),
                                  render.to_uint8(step.denoised)))
        yield steps[0].index + 1, total
    seconds, batch = time.perf_counter() - start, next(BATCH_IDS)
    samples = [step.x.cpu() for step in steps]
    probs, features = evaluate_images(models.eval_classifier, torch.cat(samples))
    realism = models.realism.distance_ratio(features).float()
    probs, features, realism = (t.split([len(x) for x in samples]) for t in (probs, features, realism))
    return [MethodRun(r, x, render.to_uint8(x), pr, ft, re, np.array([f[0] for f in fr]), np.array([f[1] for f in fr]),
                      np.stack([f[2] for f in fr]), np.stack([f[3] for f in fr]), torch.stack(pt).numpy(),
                      torch.stack(nm).numpy() if nm else np.zeros((0, r.num_samples)), batch, seconds)
            for r, x, pr, ft, re, fr, pt, nm in zip(requests, samples, probs, features, realism, frames, p_target,
                                                    norms)]


def run_methods(models: Models, requests: Sequence[Request], num_frames: int = NUM_FRAMES) -> list[MethodRun]:
    return Live(run_methods_live(models, requests, num_frames)).run()


def cache_key(request: Request) -> Request:
    """Runs that must give identical samples share a key: w = 0 (or 'unguided') ignores method and interval."""
    if request.weight == 0 or request.method == "unguided":
        return replace(request, method="unguided", weight=0.0, interval=Interval())
    return request


@dataclass(frozen=True)
class Results:
    """Runs of one request of the app, keyed by method (comparison) or (method, w) (sweep)."""
    base: Request
    runs: dict
    fresh_batches: frozenset[int]    # batches sampled for this request; the other runs came from the cache


def comparison_requests(base: Request, methods: Sequence[str] = METHODS,
                        weights: dict[str, float] | None = None) -> list[Request]:
    """One request per method: the base's settings, at the method's own w if `weights` gives one."""
    return [replace(base, method=m, weight=(weights or {}).get(m, base.weight)) for m in methods]


class Explorer:
    """The models plus a thread-safe LRU cache of finished runs, bounded in bytes (changing only w reuses
    unguided; the w ladder makes moving w instant)."""

    def __init__(self, models: Models, cache_bytes: int = CACHE_BYTES):
        self.models = models
        self.cache: OrderedDict[Request, MethodRun] = OrderedDict()
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self.lock = threading.Lock()
        self.runs_computed = 0

    def cached(self, request: Request) -> MethodRun | None:
        with self.lock:
            key = cache_key(request)
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        return None

    def runs_live(self, requests: Sequence[Request]) -> Progress[tuple[list[MethodRun], frozenset[int]]]:
        """Cached runs where possible; the rest sampled together in groups of at most MAX_ROWS denoiser rows.
        Yields progress per step; returns the runs in order and the ids of the batches it sampled."""
        keys = [cache_key(r) for r in requests]
        found = {key: run for key in dict.fromkeys(keys) if (run := self.cached(key)) is not None}  # held here
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        fresh = set()
        for group in batches(missing):
            runs = yield from run_methods_live(self.models, group)
            found.update(zip(group, runs))
            fresh.add(runs[0].batch)
            with self.lock:
                self.runs_computed += len(group)
                for key, run in zip(group, runs):
                    if key in self.cache:
                        self.cached_bytes -= self.cache.pop(key).nbytes
                    self.cache[key] = run
                    self.cached_bytes += run.nbytes
                while self.cached_bytes > self.cache_bytes and len(self.cache) > 1:
                    self.cached_bytes -= self.cache.popitem(last=False)[1].nbytes
        return [found[key] for key in keys], frozenset(fresh)

    def missing(self, requests: Sequence[Request]) -> int:
        """How many of these runs are not cached (0: showing them samples nothing)."""
        return sum(self.cached(r) is None for r in dict.fromkeys(cache_key(r) for r in requests))

    def _results(self, base: Request, keys: list, requests: list[Request]) -> Progress[Results]:
        runs, fresh = yield from self.runs_live(requests)
        return Results(base, dict(zip(keys, runs)), fresh)

    def compare_live(self, base: Request, methods: Sequence[str] = METHODS,
                     weights: dict[str, float] | None = None) -> Live[Results]:
        """Every method with the same seed and settings (each at its own w if `weights` says so), sampled
        together; runs keyed by method."""
        return Live(self._results(base, list(methods), comparison_requests(base, methods, weights)))

    def compare(self, base: Request, methods: Sequence[str] = METHODS,
                weights: dict[str, float] | None = None) -> Results:
        return self.compare_live(base, methods, weights).run()

    def sweep_live(self, base: Request, methods: Sequence[str] = METHODS[1:],
                   weights: Sequence[float] = SWEEP_WEIGHTS) -> Live[Results]:
        """Every guided method at every w, sampled together in bounded groups; runs keyed by (method, w)."""
        keys = [(m, w) for m in methods for w in weights]
        return Live(self._results(base, keys, sweep_requests(base, methods, weights)))


def sweep_requests(base: Request, methods: Sequence[str] = METHODS[1:],
                   weights: Sequence[float] = SWEEP_WEIGHTS) -> list[Request]:
    """Every method at every w (the sweep, or the w ladder), in (method, w) order."""
    return [replace(base, method=m, weight=w) for m in methods for w in weights]


def batches(requests: list[Request], max_rows: int = MAX_ROWS) -> list[list[Request]]:
    """Split requests (in order) into groups whose denoiser rows per step (samples x NFE) stay <= max_rows,
    which bounds memory; one request larger than that is a group of its own."""
    groups: list[list[Request]] = []
    rows = 0
    for request in requests:
        size = request.num_samples * GUIDANCE[request.method].nfe_per_step
        if groups and rows + size <= max_rows:
            groups[-1].append(request)
            rows += size
        else:
            groups.append([request])
            rows = size
    return groups
