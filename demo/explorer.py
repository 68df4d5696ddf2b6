"""What the app does, without the app: parse widget values, run (cached) comparisons, condense trajectories,
and build the pictures and plots. app.py only lays out widgets and calls these functions.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from . import render
from .config import CLASS_NAMES, LIMITS, METHODS, PRESETS, Interval, SamplerConfig
from .guidance import effective_weight, nfe_per_sample
from .metrics import mean_pairwise_distance
from .pipeline import Models, Request, RequestError, classify, features, generate, parse_float, parse_int
from .schedule import karras_sigmas

NUM_FRAMES = 41            # trajectory states kept per run (evenly spaced, first and last included)
FILMSTRIP_COLUMNS = 10
SWEEP_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


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
    seconds: float
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


def run_method(models: Models, request: Request, num_frames: int = NUM_FRAMES) -> MethodRun:
    """Drain one trajectory, keeping num_frames evenly spaced states and every per-step scalar."""
    total = request.sampler.num_steps + 1
    keep = set(np.unique(np.linspace(0, total - 1, min(num_frames, total)).round().astype(int)).tolist())
    frames, p_target, norms = [], [], []
    start = time.perf_counter()
    for step in generate(models, request, record=True):
        p_target.append(step.p_target.cpu())
        if step.sigma > 0:
            norms.append(step.guidance_norm.cpu())
        if step.index in keep:
            frames.append((step.index, step.sigma, render.noisy_to_uint8(step.x, step.sigma),
                           render.to_uint8(step.denoised)))
    seconds = time.perf_counter() - start
    samples = step.x.cpu()
    return MethodRun(request, samples, classify(models, samples), np.array([f[0] for f in frames]),
                     np.array([f[1] for f in frames]), np.stack([f[2] for f in frames]),
                     np.stack([f[3] for f in frames]), torch.stack(p_target).numpy(),
                     torch.stack(norms).numpy() if norms else np.zeros((0, request.num_samples)), seconds,
                     nfe(request))


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
        hit = self.cached(request)
        if hit is not None:
            return hit
        with self.compute_lock:
            hit = self.cached(request)
            if hit is not None:
                return hit
            result = run_method(self.models, cache_key(request))
            self.runs_computed += 1
        with self.lock:
            self.cache[cache_key(request)] = result
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return result

    def compare(self, base: Request, methods: Sequence[str] = METHODS) -> Iterator[tuple[str, MethodRun]]:
        """Every method with the same seed and settings; yields as each finishes."""
        for method in methods:
            yield method, self.run(replace(base, method=method))

    def sweep(self, base: Request, methods: Sequence[str] = METHODS[1:], weights: Sequence[float] = SWEEP_WEIGHTS
              ) -> Iterator[tuple[str, float, MethodRun]]:
        for method in methods:
            for weight in weights:
                yield method, weight, self.run(replace(base, method=method, weight=weight))


def summary(runs: dict[str, MethodRun]) -> str:
    """Markdown table: evaluation-classifier accuracy and confidence, cost."""
    lines = ["| method | accuracy | mean p(target) | NFE / sample | time |", "|---|---|---|---|---|"]
    for method, run in runs.items():
        lines.append(f"| {PRESETS[method].title} | {run.accuracy():.0%} | {run.confidence():.2f} | {run.nfe} | "
                     f"{run.seconds:.2f} s |")
    return "\n".join(lines) + "\n\nAccuracy and confidence: the separate evaluation classifier. " \
        "Times are for fresh runs; cached runs are reused when only the view or w changes."


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
    return render.grid(rows, labels, label_width=190, title=title)


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
