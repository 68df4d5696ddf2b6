"""The exact 2-D lab: every guidance method on an analytic Gaussian mixture, with the tilted target density.

Same sampler loop and guidance classes as the image model; only the "networks" are exact:
D(x; sigma, c) and p(c | x, sigma) of the mixture, and a widened mixture as the weak model of autoguidance.
A run keeps only what the figure and the table use (a few trajectories and the final points), so its memory
stays bounded whatever the number of points and steps.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from demo.engine.config import BUDGET, LIMITS, SIGMA_MAX, SIGMA_MIN, Interval  # the image model's noise levels
from demo.engine.guidance import GUIDANCE, METHODS, make_guidance
from demo.engine.noise import BatchNoise, karras_sigmas
from demo.engine.progress import Live, Progress
from demo.engine.samplers import sample
from demo.engine.validation import RequestError, checked, choice
from demo.toy.mixture import PRESETS, GaussianMixture, MixtureClassifier

WEAK_EXTRA_STD = 0.6                      # autoguidance's weak model: every covariance + 0.6^2 I
EXTENT = 4.5                              # plots and density grids cover [-EXTENT, EXTENT]^2
TRACKED = 12                              # trajectories kept (and drawn) per method
CACHE_SIZE = 8


def exact_models(mixture: GaussianMixture) -> dict:
    """What the guidance methods need, exactly: the Bayes classifier and a widened mixture as weak model."""
    return {"classifier": MixtureClassifier(mixture), "weak_net": mixture.widened(WEAK_EXTRA_STD)}


def classes(preset: str) -> list[int]:
    """The class labels of a preset's mixture (what the class picker offers)."""
    return list(range(PRESETS[preset]().num_classes))


@dataclass(frozen=True)
class ToyRequest:
    preset: str
    label: int
    weight: float
    num_steps: int = 100
    num_samples: int = 500
    seed: int = 0
    interval: Interval = Interval()
    methods: tuple[str, ...] = METHODS


def parse_toy(preset, label, weight, num_steps, num_samples, seed, methods: Sequence[str] = METHODS) -> ToyRequest:
    """Widget values -> a validated ToyRequest (RequestError with a clear message otherwise)."""
    choice("mixture", preset, PRESETS)
    for method in methods:
        choice("method", method, GUIDANCE)
    return ToyRequest(preset, checked("class", label, 0, PRESETS[preset]().num_classes - 1, integer=True),
                      checked("guidance weight w", weight, 0, LIMITS.max_weight),
                      checked("steps", num_steps, 1, LIMITS.max_steps, integer=True),
                      checked("number of points", num_samples, 1, LIMITS.max_toy_points, integer=True),
                      checked("seed", seed, 0, LIMITS.max_seed, integer=True), methods=tuple(methods))


@dataclass(frozen=True)
class ToyResult:
    request: ToyRequest
    mixture: GaussianMixture
    sigmas: np.ndarray                    # (N + 1,)
    paths: dict[str, np.ndarray]          # method -> (N + 1, TRACKED, 2): the first points, noise to sample
    finals: dict[str, np.ndarray]         # method -> (B, 2) every final point
    seconds: float
    from_cache: bool = False


def toy_live(request: ToyRequest) -> Progress[ToyResult]:
    """Every method from the same noise, advanced together one step at a time (so a caller can stop between
    steps); yields (steps done, total) and returns the result."""
    mixture = PRESETS[request.preset]()
    models = exact_models(mixture)
    labels = torch.full((request.num_samples,), request.label, dtype=torch.long)
    sigmas = karras_sigmas(request.num_steps, SIGMA_MIN, SIGMA_MAX)
    start = time.perf_counter()
    runs = {}
    for method in request.methods:
        guidance = make_guidance(method, request.weight, request.interval, **models)
        noise = BatchNoise(request.seed, request.num_samples, dtype=torch.float64)
        runs[method] = sample(lambda x, s, g=guidance: g(mixture, x, s, labels), sigmas, noise, (2,))
    paths: dict[str, list] = {m: [] for m in runs}
    total = request.num_steps + 1
    for i, steps in enumerate(zip(*runs.values())):
        for method, step in zip(runs, steps):
            paths[method].append(step.x[:TRACKED].numpy())
        yield i + 1, total
    finals = {m: step.x.numpy() for m, step in zip(runs, steps)}
    return ToyResult(request, mixture, sigmas.numpy(), {m: np.stack(p) for m, p in paths.items()}, finals,
                     time.perf_counter() - start)


class ToyLab:
    """The 2-D lab's runs, with a small thread-safe LRU cache of results."""

    def __init__(self, cache_size: int = CACHE_SIZE, budget: float = BUDGET):
        self.cache: OrderedDict[ToyRequest, ToyResult] = OrderedDict()
        self.cache_size, self.lock, self.budget = cache_size, threading.Lock(), budget

    def check_budget(self, request: ToyRequest) -> None:
        """RequestError if the run costs more than `budget` default 2-D runs (500 points x 100 steps)."""
        times = request.num_samples * request.num_steps * len(request.methods) / (500 * 100 * len(METHODS))
        if times > self.budget:
            raise RequestError(f"This 2-D run would cost {times:.1f}x the default one; this server allows "
                               f"{self.budget:g}x per request. Use fewer points or steps.")

    def run_live(self, request: ToyRequest) -> Live[ToyResult]:
        return Live(self._run(request))

    def _run(self, request: ToyRequest) -> Progress[ToyResult]:
        self.check_budget(request)
        with self.lock:
            if request in self.cache:
                self.cache.move_to_end(request)
                return replace(self.cache[request], from_cache=True)
        result = yield from toy_live(request)
        with self.lock:
            self.cache[request] = result
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return result


def run_toy(preset: str, label: int, weight: float, num_steps: int = 100, num_samples: int = 500, seed: int = 0,
            interval: Interval = Interval(), methods: Sequence[str] = METHODS) -> ToyResult:
    """Sample (no cache): the methods named, from the same noise."""
    return Live(toy_live(ToyRequest(preset, label, weight, num_steps, num_samples, seed, interval,
                                    tuple(methods)))).run()


def density_grid(mixture: GaussianMixture, label: int, weight: float, resolution: int = 161,
                 extent: float = EXTENT) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """p(x | c) and the tilted density q(x) = p(x|c) p(c|x)^w / Z = p(x|c)^(1+w) p(x)^-w / Z' at sigma = 0,
    both normalised on the grid. Returns (X, Y, p_cond, q) with (resolution, resolution) arrays."""
    axis = torch.linspace(-extent, extent, resolution, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)
    log_cond = mixture.log_prob(points, 0.0, label)
    log_marginal = mixture.log_prob(points, 0.0, mixture.num_classes)
    cell = float(axis[1] - axis[0]) ** 2

    def normalised(log_p: torch.Tensor) -> np.ndarray:
        p = (log_p - log_p.max()).exp()
        return (p / (p.sum() * cell)).view(resolution, resolution).numpy()

    return xx.numpy(), yy.numpy(), normalised(log_cond), normalised((1 + weight) * log_cond - weight * log_marginal)


def grid_moments(xx: np.ndarray, yy: np.ndarray, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cell = (xx[0, 1] - xx[0, 0]) * (yy[1, 0] - yy[0, 0])
    w = density * cell
    mean = np.array([(w * xx).sum(), (w * yy).sum()])
    std = np.sqrt(np.array([(w * (xx - mean[0]) ** 2).sum(), (w * (yy - mean[1]) ** 2).sum()]))
    return mean, std


def moments_table(result: ToyResult) -> str:
    """Markdown: sample mean/std per method next to those of the exact tilted density q_w."""
    xx, yy, _, tilted = density_grid(result.mixture, result.request.label, result.request.weight)
    target_mean, target_std = grid_moments(xx, yy, tilted)
    lines = ["| points | mean | std | distance of mean to q_w's | std / q_w's std |", "|---|---|---|---|---|",
             f"| **exact tilted q_w** | ({target_mean[0]:+.2f}, {target_mean[1]:+.2f}) | "
             f"({target_std[0]:.2f}, {target_std[1]:.2f}) | – | – |"]
    for method, x in result.finals.items():
        mean, std = x.mean(0), x.std(0)
        ratio = std / target_std
        lines.append(f"| {GUIDANCE[method].short_title} | ({mean[0]:+.2f}, {mean[1]:+.2f}) | "
                     f"({std[0]:.2f}, {std[1]:.2f}) | {np.linalg.norm(mean - target_mean):.3f} | "
                     f"({ratio[0]:.2f}, {ratio[1]:.2f}) |")
    return "\n".join(lines)


def field_sigma(result: ToyResult, step: int) -> float:
    """The noise level of sampling step `step`, clamped to the steps that have one (the last state has none)."""
    return float(result.sigmas[min(max(step, 0), len(result.sigmas) - 2)])


def guidance_field(result: ToyResult, method: str, step: int, resolution: int = 17,
                   extent: float = EXTENT) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """w * Delta of one method at the noise level of `step`, on a coarse grid (for a quiver plot); zero where
    the run's guidance interval switches guidance off."""
    mixture, request = result.mixture, result.request
    axis = torch.linspace(-extent, extent, resolution, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)
    labels = torch.full((len(points),), request.label, dtype=torch.long)
    guidance = make_guidance(method, request.weight, request.interval, **exact_models(mixture))
    delta = guidance(mixture, points, field_sigma(result, step), labels).delta
    return xx.numpy(), yy.numpy(), delta[:, 0].view_as(xx).numpy(), delta[:, 1].view_as(xx).numpy()


def total_mass(density: np.ndarray, extent: float = EXTENT) -> float:
    """Integral of a grid density over the square (should be ~1)."""
    resolution = density.shape[0]
    return float(density.sum() * (2 * extent / (resolution - 1)) ** 2)


def figure(result: ToyResult, field_step: int | None = None):
    """The toy tab's picture: one panel per method (see render.toy_panels)."""
    request = result.request
    xx, yy, cond, tilted = density_grid(result.mixture, request.label, request.weight)
    visible = result.sigmas <= EXTENT                     # earlier states lie far outside the plot
    panels = {GUIDANCE[m].short_title: {
        "xx": xx, "yy": yy, "cond": cond, "tilted": tilted, "paths": path[visible], "finals": result.finals[m],
        "field": None if field_step is None or m == "unguided" else guidance_field(result, m, field_step)}
        for m, path in result.paths.items()}
    sigma = "" if field_step is None else f" · red arrows: w·Δ at σ = {field_sigma(result, field_step):.3g}"
    return toy_panels(panels, EXTENT, f"class {request.label}, w = {request.weight:g} · blue: exact tilted density "
                             f"p(x|c) p(c|x)^w · dashed: p(x|c){sigma}",
                             {GUIDANCE[m].short_title: GUIDANCE[m].colour for m in result.paths})


def toy_panels(panels: dict[str, dict], extent: float, title: str, colours: dict[str, str]) -> plt.Figure:
    """One panel per method: tilted-density filled contours, p(x|c) contour lines, trajectories, samples and,
    optionally, the guidance vector field. Each panel dict has xx, yy, cond, tilted, paths (N+1, K, 2) (drawn
    trajectories), finals (B, 2) (every final point) and field."""
    columns = min(3, len(panels))                     # 3 x 2 for six methods: each panel large enough to read
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.5 * columns, 2.45 * rows + 0.5), dpi=100,
                             layout="constrained", sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, panel) in zip(axes.flat, panels.items()):
        ax.contourf(panel["xx"], panel["yy"], panel["tilted"], levels=12, cmap="Blues", alpha=0.85)
        ax.contour(panel["xx"], panel["yy"], panel["cond"], levels=6, colors="0.35", linewidths=0.7,
                   linestyles="dashed")
        paths = panel["paths"]
        for k in range(min(12, paths.shape[1])):
            ax.plot(paths[:, k, 0].clip(-extent, extent), paths[:, k, 1].clip(-extent, extent), lw=0.6,
                    color="0.25", alpha=0.6)
        ax.scatter(panel["finals"][:, 0], panel["finals"][:, 1], s=4, color=colours.get(name, "k"), alpha=0.6)
        if panel.get("field") is not None:
            fx, fy, u, v = panel["field"]
            ax.quiver(fx, fy, u, v, color="#b91c1c", angles="xy", scale_units="xy", scale=None, width=0.004)
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=12, fontweight="bold")
        ax.tick_params(labelsize=9)
    fig.suptitle(title, fontsize=10.5, wrap=True)
    return fig
