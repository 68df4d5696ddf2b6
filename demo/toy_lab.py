"""The exact 2-D lab: every guidance method on an analytic Gaussian mixture, with the tilted target density.

Same sampler loop and guidance classes as the image model; only the "networks" are exact:
D(x; sigma, c) and p(c | x, sigma) of the mixture, and a widened mixture as the weak model of autoguidance.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import METHODS, Interval
from .guidance import make_guidance
from .sampling import BatchNoise, sample
from .schedule import karras_sigmas
from .toy import PRESETS, GaussianMixture, MixtureClassifier

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0        # the image model's noise levels (a smaller sigma_max biases samples)
WEAK_EXTRA_STD = 0.6                      # autoguidance's weak model: every covariance + 0.6^2 I
EXTENT = 4.5                              # plots and density grids cover [-EXTENT, EXTENT]^2


def exact_models(mixture: GaussianMixture) -> dict:
    """What the guidance methods need, exactly: the Bayes classifier and a widened mixture as weak model."""
    return {"classifier": MixtureClassifier(mixture), "weak_net": mixture.widened(WEAK_EXTRA_STD)}


@dataclass(frozen=True)
class ToyResult:
    mixture: GaussianMixture
    label: int
    weight: float
    sigmas: np.ndarray                    # (N + 1,)
    paths: dict[str, np.ndarray]          # method -> (N + 1, B, 2) states from noise to sample
    seconds: float


MAX_TOY_SAMPLES = 5000


def parse_toy(preset, label, weight, num_steps, num_samples, seed) -> tuple:
    """Widget values -> validated run_toy arguments (RequestError with a clear message otherwise)."""
    from .pipeline import RequestError, parse_float, parse_int
    if preset not in PRESETS:
        raise RequestError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    label = parse_int("class", label, 0, PRESETS[preset]().num_classes - 1)
    weight = parse_float("guidance weight w", weight)
    if not 0 <= weight <= 20:
        raise RequestError(f"guidance weight w must be between 0 and 20, got {weight:g}")
    return (preset, label, weight, parse_int("steps", num_steps, 1, 1000),
            parse_int("number of points", num_samples, 1, MAX_TOY_SAMPLES), parse_int("seed", seed, 0, 2**31 - 1))


@functools.lru_cache(maxsize=8)
def run_toy(preset: str, label: int, weight: float, num_steps: int = 100, num_samples: int = 500, seed: int = 0,
            sampler: str = "ddim", interval: Interval = Interval()) -> ToyResult:
    """Every method from the same noise; returns full trajectories."""
    mixture = PRESETS[preset]()
    models = exact_models(mixture)
    labels = torch.full((num_samples,), label, dtype=torch.long)
    sigmas = karras_sigmas(num_steps, SIGMA_MIN, SIGMA_MAX)
    paths = {}
    start = time.perf_counter()
    for method in METHODS:
        guidance = make_guidance(method, weight, interval, **models)
        noise = BatchNoise(seed, num_samples, dtype=torch.float64)
        steps = sample(lambda x, s: guidance(mixture, x, s, labels), sigmas, noise, (2,), sampler)
        paths[method] = torch.stack([step.x for step in steps]).numpy()
    return ToyResult(mixture, label, weight, sigmas.numpy(), paths, time.perf_counter() - start)


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
    xx, yy, _, tilted = density_grid(result.mixture, result.label, result.weight)
    target_mean, target_std = grid_moments(xx, yy, tilted)
    lines = ["| | mean | std | distance of mean to q_w's | std / q_w's std |", "|---|---|---|---|---|",
             f"| **exact tilted q_w** | ({target_mean[0]:+.2f}, {target_mean[1]:+.2f}) | "
             f"({target_std[0]:.2f}, {target_std[1]:.2f}) | – | – |"]
    for method, path in result.paths.items():
        x = path[-1]
        mean, std = x.mean(0), x.std(0)
        ratio = std / target_std
        lines.append(f"| {method} | ({mean[0]:+.2f}, {mean[1]:+.2f}) | ({std[0]:.2f}, {std[1]:.2f}) | "
                     f"{np.linalg.norm(mean - target_mean):.3f} | ({ratio[0]:.2f}, {ratio[1]:.2f}) |")
    return "\n".join(lines)


def guidance_field(result: ToyResult, method: str, step: int, resolution: int = 17,
                   extent: float = EXTENT) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """w * Delta of one method at the noise level of `step`, on a coarse grid (for a quiver plot)."""
    mixture = result.mixture
    models = exact_models(mixture)
    axis = torch.linspace(-extent, extent, resolution, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)
    sigma = float(result.sigmas[min(step, len(result.sigmas) - 2)])
    labels = torch.full((len(points),), result.label, dtype=torch.long)
    delta = make_guidance(method, result.weight, **models)(mixture, points, sigma, labels).delta
    return xx.numpy(), yy.numpy(), delta[:, 0].view_as(xx).numpy(), delta[:, 1].view_as(xx).numpy()


def total_mass(density: np.ndarray, extent: float = EXTENT) -> float:
    """Integral of a grid density over the square (should be ~1)."""
    resolution = density.shape[0]
    return float(density.sum() * (2 * extent / (resolution - 1)) ** 2)


def figure(result: ToyResult, field_step: int | None = None):
    """The toy tab's picture: one panel per method (see render.toy_panels)."""
    from . import render
    xx, yy, cond, tilted = density_grid(result.mixture, result.label, result.weight)
    visible = result.sigmas <= EXTENT                     # earlier states lie far outside the plot
    panels = {m: {"xx": xx, "yy": yy, "cond": cond, "tilted": tilted, "paths": path[visible],
                  "field": None if field_step is None or m == "unguided" else guidance_field(result, m, field_step)}
              for m, path in result.paths.items()}
    sigma = "" if field_step is None else f"; arrows: w·Δ at σ = {result.sigmas[field_step]:.3g}"
    return render.toy_panels(panels, EXTENT, f"class {result.label}, w = {result.weight:g}: blue = exact tilted "
                             f"density p(x|c) p(c|x)^w, dashed = p(x|c){sigma}")
