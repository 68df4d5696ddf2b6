"""What the app does, without the app: parse widget values, run (cached) comparisons, condense trajectories,
and build the pictures and plots. app.py only lays out widgets and calls these functions.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from . import render
from .config import CLASS_NAMES, LIMITS, METHODS, PRESETS, Interval, SamplerConfig
from .guidance import NFE_PER_STEP, effective_weight, nfe_per_sample
from .metrics import mean_pairwise_distance
from .pipeline import Models, Request, classify, features, generate_together, parse_float, parse_int
from .schedule import karras_sigmas

T = TypeVar("T")
NUM_FRAMES = 41            # trajectory states kept per run (evenly spaced, first and last included)
FILMSTRIP_COLUMNS = 10
SWEEP_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
MAX_ROWS = 512             # denoiser rows per batched call when runs are sampled together (bounds memory)


def parse_request(label, weight, num_steps, sampler, num_samples, seed, sigma_lo=None, sigma_hi=None,
                  method: str = "unguided") -> Request:
    """Widget (or API) values -> a validated Request; every problem is a RequestError with a clear message."""
    if isinstance(label, str) and label in CLASS_NAMES:
        label = CLASS_NAMES.index(label)
    label = parse_int("class", label, 0, len(CLASS_NAMES) - 1)
    num_steps = parse_int("steps", num_steps, 1, LIMITS.max_steps)
    num_samples = parse_int("number of samples", num_samples, 1, LIMITS.max_samples)
    seed = parse_int("seed", seed, 0, LIMITS.max_seed)
    interval = Interval(parse_float("guidance interval low sigma", sigma_lo, 0.0),
                        parse_float("guidance interval high sigma", sigma_hi, math.inf))
    return Request(label=label, method=method, weight=parse_float("guidance weight w", weight), num_samples=num_samples,
                   seed=seed, sampler=SamplerConfig(num_steps=num_steps, sampler=str(sampler)), interval=interval)


def nfe(request: Request) -> int:
    """Denoiser evaluations per sample (a batched cond + null pass counts 2); classifier passes not included."""
    cfg = request.sampler
    sigmas = karras_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)[:-1].tolist()
    return nfe_per_sample(request.method, request.weight, request.interval, sigmas)


@dataclass(frozen=True)
class MethodRun:
    """A finished run, condensed for display: final samples, their evaluation, and a few trajectory frames."""
    request: Request
    samples: torch.Tensor          # (B, 1, 28, 28) in [-1, 1]
    probs: torch.Tensor            # (B, 10) evaluation-classifier probabilities
    frame_steps: np.ndarray        # (F,) step indices of the kept frames
    frame_sigmas: np.ndarray       # (F,)
    frames_x: np.ndarray           # (F, B, 28, 28) uint8, x_t shown at unit scale
    frames_denoised: np.ndarray    # (F, B, 28, 28) uint8, guided x0 estimate
    p_target: np.ndarray           # (N + 1, B) p(target | x_t) from the noisy classifier
    guidance_norm: np.ndarray      # (N, B) ||D_w - D||
    seconds: float                 # wall time of the sampling batch this run was part of (shared, in lockstep)
    nfe: int

    def captions(self) -> list[str]:
        conf, pred = self.probs.max(dim=1)
        label = self.request.label
        return [f"{'✓' if p == label else '✗'} {p} · {c:.0%}" for p, c in zip(pred.tolist(), conf.tolist())]

    def accuracy(self) -> float:
        return (self.probs.argmax(1) == self.request.label).float().mean().item()

    def confidence(self) -> float:
        """Mean evaluation-classifier probability of the target class."""
        return self.probs[:, self.request.label].mean().item()


def run_methods_live(models: Models, requests: Sequence[Request], num_frames: int = NUM_FRAMES,
                     lock: AbstractContextManager = nullcontext()) -> Generator[tuple[int, int], None, list[MethodRun]]:
    """Sample requests together (one batched network call per round for all of them) and condense each:
    num_frames evenly spaced states plus every per-step scalar. Yields (steps done, total) after every step,
    so a caller can report progress or stop; returns the runs. `lock` is held for each step's computation
    only (never across a yield), so an abandoned run blocks nobody."""
    total = requests[0].sampler.num_steps + 1
    keep = set(np.unique(np.linspace(0, total - 1, min(num_frames, total)).round().astype(int)).tolist())
    frames: list[list] = [[] for _ in requests]
    p_target: list[list] = [[] for _ in requests]
    norms: list[list] = [[] for _ in requests]
    start = time.perf_counter()
    trajectory = generate_together(models, requests, record=True)
    for _ in range(total):
        with lock:
            steps = next(trajectory)
        for k, step in enumerate(steps):
            p_target[k].append(step.p_target.cpu())
            if step.sigma > 0:
                norms[k].append(step.guidance_norm.cpu())
            if step.index in keep:
                frames[k].append((step.index, step.sigma, render.noisy_to_uint8(step.x, step.sigma),
                                  render.to_uint8(step.denoised)))
        yield steps[0].index + 1, total
    seconds = time.perf_counter() - start
    samples = [step.x.cpu() for step in steps]
    probs = classify(models, torch.cat(samples)).split([len(x) for x in samples])
    return [MethodRun(r, x, pr, np.array([f[0] for f in fr]), np.array([f[1] for f in fr]),
                      np.stack([f[2] for f in fr]), np.stack([f[3] for f in fr]), torch.stack(pt).numpy(),
                      torch.stack(nm).numpy() if nm else np.zeros((0, r.num_samples)), seconds, nfe(r))
            for r, x, pr, fr, pt, nm in zip(requests, samples, probs, frames, p_target, norms)]


def drain(live: Generator[object, None, T]) -> T:
    """Run a live computation to the end and return its result."""
    while True:
        try:
            next(live)
        except StopIteration as done:
            return done.value


def run_methods(models: Models, requests: Sequence[Request], num_frames: int = NUM_FRAMES) -> list[MethodRun]:
    return drain(run_methods_live(models, requests, num_frames))


def run_method(models: Models, request: Request, num_frames: int = NUM_FRAMES) -> MethodRun:
    """One request alone."""
    return run_methods(models, [request], num_frames)[0]


def cache_key(request: Request) -> Request:
    """Runs that must give identical samples share a key: w = 0 (or 'unguided') ignores method and interval."""
    if effective_weight(request.method, request.weight) == 0:
        return replace(request, method="unguided", weight=0.0, interval=Interval())
    return request


class Explorer:
    """The models plus a small thread-safe LRU cache of finished runs (changing only w reuses unguided)."""

    def __init__(self, models: Models, cache_size: int = 48):
        self.models = models
        self.cache: OrderedDict[Request, MethodRun] = OrderedDict()
        self.cache_size = cache_size
        self.lock = threading.Lock()
        self.compute_lock = threading.Lock()     # one sampling run at a time: the CPU has no spare cores
        self.runs_computed = 0

    def cached(self, request: Request) -> MethodRun | None:
        with self.lock:
            key = cache_key(request)
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        return None

    def run(self, request: Request) -> MethodRun:
        return self.run_many([request])[0]

    def run_many(self, requests: Sequence[Request]) -> list[MethodRun]:
        return drain(self.run_many_live(requests))

    def run_many_live(self, requests: Sequence[Request]) -> Generator[tuple[int, int], None, list[MethodRun]]:
        """Cached runs where possible; the rest sampled together in groups of at most MAX_ROWS denoiser rows,
        one step at a time under the compute lock (the CPU has no spare cores). Yields progress per step."""
        missing = list(dict.fromkeys(cache_key(r) for r in requests if self.cached(r) is None))
        fresh = {}
        for group in batches(missing):
            runs = yield from run_methods_live(self.models, group, lock=self.compute_lock)
            fresh.update(zip(group, runs))
            with self.lock:
                self.runs_computed += len(group)
                for key, run in zip(group, runs):
                    self.cache[key] = run
                    self.cache.move_to_end(key)
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        return [fresh.get(cache_key(r)) or self.cached(r) for r in requests]

    def compare_live(self, base: Request, methods: Sequence[str] = METHODS
                     ) -> Generator[tuple[int, int], None, dict[str, MethodRun]]:
        """Every method with the same seed and settings, sampled together; yields progress per step."""
        runs = yield from self.run_many_live([replace(base, method=m) for m in methods])
        return dict(zip(methods, runs))

    def compare(self, base: Request, methods: Sequence[str] = METHODS) -> dict[str, MethodRun]:
        return drain(self.compare_live(base, methods))

    def sweep_live(self, base: Request, methods: Sequence[str] = METHODS[1:], weights: Sequence[float] = SWEEP_WEIGHTS
                   ) -> Generator[tuple[int, int], None, list[tuple[str, float, MethodRun]]]:
        keys = [(m, w) for m in methods for w in weights]
        runs = yield from self.run_many_live([replace(base, method=m, weight=w) for m, w in keys])
        return [(m, w, run) for (m, w), run in zip(keys, runs)]

    def sweep(self, base: Request, methods: Sequence[str] = METHODS[1:], weights: Sequence[float] = SWEEP_WEIGHTS
              ) -> list[tuple[str, float, MethodRun]]:
        return drain(self.sweep_live(base, methods, weights))


def batches(requests: list[Request], max_rows: int = MAX_ROWS) -> list[list[Request]]:
    """Split requests (in order) into groups whose denoiser rows per step (samples x NFE) stay <= max_rows,
    which bounds memory; one request larger than that is a group of its own."""
    groups: list[list[Request]] = []
    rows = 0
    for request in requests:
        size = request.num_samples * NFE_PER_STEP[request.method]
        if groups and rows + size <= max_rows:
            groups[-1].append(request)
            rows += size
        else:
            groups.append([request])
            rows = size
    return groups


def summary(runs: dict[str, MethodRun]) -> str:
    """Markdown table: evaluation-classifier accuracy and confidence, cost."""
    lines = ["| method | accuracy | mean p(target) | NFE / sample |", "|---|---|---|---|"]
    for method, run in runs.items():
        lines.append(f"| {PRESETS[method].title} | {run.accuracy():.0%} | {run.confidence():.2f} | {run.nfe} |")
    batches = {}
    for run in runs.values():                    # runs sampled together share their wall time
        batches.setdefault(run.seconds, []).append(run)
    timing = " + ".join(f"{seconds:.2f} s ({len(group)} run{'s' * (len(group) > 1)})"
                        for seconds, group in batches.items())
    return "\n".join(lines) + "\n\nAccuracy and confidence: the separate evaluation classifier. " \
        f"Sampling time: {timing}; methods computed together share one batched network call per step, " \
        "and runs are cached, so changing only w or the view recomputes nothing else."


# ---- pictures -------------------------------------------------------------------------------------------

def gallery(run: MethodRun) -> list[tuple[Image.Image, str]]:
    return [(render.digit(px), caption) for px, caption in zip(render.to_uint8(run.samples), run.captions())]


def short_title(method: str) -> str:
    return PRESETS[method].title.replace("Gradient-free classifier guidance", "Gradient-free CG")


def comparison_grid(runs: dict[str, MethodRun], base: Request) -> Image.Image:
    """All methods' samples, one row each, with accuracy and the settings that reproduce them."""
    rows = [render.to_uint8(run.samples) for run in runs.values()]
    labels = [f"{short_title(m)}  {run.accuracy():.0%}" for m, run in runs.items()]
    interval = "" if base.interval == Interval() else \
        f", interval ({base.interval.sigma_lo:g}, {base.interval.sigma_hi:g}]"
    title = (f"{CLASS_NAMES[base.label]}, w = {base.weight:g}, seed {base.seed}, {base.sampler.num_steps} "
             f"{base.sampler.sampler} steps{interval}")
    return render.grid(rows, labels, label_width=225, title=title)


def filmstrip(runs: dict[str, MethodRun], index: int, columns: int = FILMSTRIP_COLUMNS) -> Image.Image:
    """x_t and the x0 estimate of sample `index` at ~10 evenly spaced steps, two rows per method."""
    run0 = next(iter(runs.values()))
    pick = np.unique(np.linspace(0, len(run0.frame_steps) - 1, min(columns, len(run0.frame_steps))).round()
                     .astype(int))
    rows, labels = [], []
    for method, run in runs.items():
        rows += [run.frames_x[pick, index], run.frames_denoised[pick, index]]
        labels += [f"{method}: x_t", f"{method}: x0 estimate"]
    cols = [f"σ={s:.3g}" for s in run0.frame_sigmas[pick]]
    return render.grid(rows, labels, cols, scale=3, label_width=190)


def animation(runs: dict[str, MethodRun], index: int) -> bytes:
    """GIF of the denoising of sample `index`, all methods side by side (x_t above, x0 estimate below)."""
    run0 = next(iter(runs.values()))
    frames = []
    for f, sigma in enumerate(run0.frame_sigmas):
        rows = [np.stack([run.frames_x[f, index] for run in runs.values()]),
                np.stack([run.frames_denoised[f, index] for run in runs.values()])]
        frames.append(render.grid(rows, [f"x_t  σ={sigma:.3g}", "x0 estimate"], list(runs), scale=3,
                                  label_width=110))
    return render.animation(frames)


def step_plots(runs: dict[str, MethodRun], index: int):
    steps = np.arange(len(next(iter(runs.values())).p_target))
    p = render.step_curves({m: r.p_target[:, index] for m, r in runs.items()}, steps,
                           "p(target | x_t)", "Noisy classifier's belief in the target class", ylim=(0, 1.02))
    g = render.step_curves({m: r.guidance_norm[:, index] for m, r in runs.items()}, steps,
                           "‖D_w − D‖ (pixels, L2)", "How far guidance moves the x0 estimate", log=True)
    return p, g


def sweep_figures(models: Models, results: list[tuple[str, float, MethodRun]]):
    """Grid of the first 4 samples per (method, w) and the fidelity-vs-diversity trade-off."""
    methods = list(dict.fromkeys(m for m, _, _ in results))
    weights = list(dict.fromkeys(w for _, w, _ in results))
    by_key = {(m, w): run for m, w, run in results}
    rows = [np.concatenate([render.to_uint8(by_key[m, w].samples[:4]) for w in weights]) for m in methods]
    per = min(4, len(results[0][2].samples))
    cols = [f"w={w:g}" if j % per == 0 else "" for w in weights for j in range(per)]
    picture = render.grid(rows, [short_title(m) for m in methods], cols, label_width=190)
    points = {}
    for m in methods:
        points[m] = [(w, mean_pairwise_distance(features(models, by_key[m, w].samples)), by_key[m, w].confidence())
                     for w in weights]
    figure = render.tradeoff(points, "diversity: mean pairwise distance (eval-classifier features)",
                             "fidelity: mean p(target) (evaluation classifier)", "Fidelity vs diversity as w grows")
    return picture, figure
