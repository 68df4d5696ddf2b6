"""The one sampler loop. It knows nothing about guidance, rho or recording: it yields typed steps.

`denoise(x, sigma) -> Prediction` is any denoiser (guided or not), `sigmas` a decreasing sequence ending in 0.
The batch may hold several runs side by side (pipeline.sample_runs): every step here is elementwise per sample.
Samplers (Karras et al. 2022, Sec. 3 / k-diffusion):
  ddim       deterministic: Euler on the probability-flow ODE, x' = D + (sigma'/sigma)(x - D). In the
             sigma parametrisation this is exactly DDIM with eta = 0 (Song et al. 2021; Karras et al. 2022, Sec. 3).
  ancestral  stochastic: DDPM-like ancestral step (eta = 1): down to sigma_down, then add sigma_up fresh noise.
  dpmpp_2m   deterministic, second order with one evaluation per step: DPM-Solver++(2M) (Lu et al. 2022,
             Alg. 2), which reuses the previous step's x0 estimate.
  dpmpp_3m   deterministic, third order with one evaluation per step: DPM-Solver++(3M), the multistep form of
             Lu et al. (2022) with the previous two x0 estimates (k-diffusion's sample_dpmpp_3m_sde at eta = 0).
`Trajectory` holds one run's state between steps, so that a caller can advance many runs in one batched
network call per step (the app's scheduler); `sample` is the plain loop over it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from demo.engine.noise import Noise


class Prediction(NamedTuple):
    """What a denoiser returns to the sampler: its x0 estimate and, optionally, two records for the trajectory."""
    denoised: Tensor                  # x0 estimate D(x; sigma) the step follows (guided, for a guided denoiser)
    delta: Tensor | None = None       # how much of it is guidance: D_w - D(x|c) (None: nothing)
    p_target: Tensor | None = None    # p(c | x, sigma) if the denoiser computed it, (B,)


@dataclass(frozen=True)
class Step:
    """One state of a trajectory; step `index` of N, the last (index N, sigma 0) holds the final sample."""
    index: int
    sigma: float
    x: Tensor                    # noisy state entering this step, (B, ...)
    denoised: Tensor             # x0 estimate the step followed (after the clamp, if any; the final sample at N)
    guidance_norm: Tensor        # ||applied change|| per sample, (B,): how far guidance moved the estimate the
                                 # step followed, i.e. after the clamp: ||clamp(D_w) - clamp(D)||
    p_target: Tensor | None      # p(c | x, sigma), (B,), if the denoiser reported it




Previous = tuple[tuple[Tensor, float], ...]  # the last steps' (x0 estimate, sigma), most recent first (at most
                                             # MULTISTEP_HISTORY; empty at the first step), for multistep samplers
MULTISTEP_HISTORY = 2


def ddim_step(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, noise: Noise, previous: Previous
              ) -> Tensor:
    """Euler step of dx/dsigma = (x - D) / sigma (Karras et al. 2022, Eq. 3 / Alg. 1 without the Heun term)."""
    return denoised + (sigma_next / sigma) * (x - denoised)


def ancestral_step(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, noise: Noise,
                   previous: Previous) -> Tensor:
    """Ancestral step: sigma_up^2 = sigma'^2 (sigma^2 - sigma'^2) / sigma^2, sigma_down^2 = sigma'^2 - sigma_up^2."""
    sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    x_next = denoised + (sigma_down / sigma) * (x - denoised)
    return x_next + sigma_up * noise.randn(x.shape[1:]) if sigma_next > 0 else x_next


def dpmpp_2m_step(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, noise: Noise,
                  previous: Previous) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2; k-diffusion's sample_dpmpp_2m), with t = -log sigma:
    x' = (sigma'/sigma) x - (e^-h - 1) D_d,  D_d = (1 + 1/(2r)) D - (1/(2r)) D_prev,  r = h_prev / h.
    The first step and the last (sigma' = 0) are first order, i.e. the DDIM step."""
    if not previous or sigma_next == 0:
        return ddim_step(x, denoised, sigma, sigma_next, noise, previous)
    old_denoised, old_sigma = previous[0]
    h = math.log(sigma / sigma_next)
    r = math.log(old_sigma / sigma) / h
    denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
    return (sigma_next / sigma) * x - math.expm1(-h) * denoised_d


def dpmpp_3m_step(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, noise: Noise,
                  previous: Previous) -> Tensor:
    """DPM-Solver++(3M) (Lu et al. 2022, Sec. 4's multistep solver at third order; k-diffusion's
    sample_dpmpp_3m_sde with eta = 0), with t = -log sigma, h = t' - t, h_k the earlier steps' h, r_k = h_k / h:
    x' = (sigma'/sigma) x - (e^-h - 1) D + phi_2 d1 - phi_3 d2,   phi_2 = (e^-h - 1)/h + 1,  phi_3 = phi_2/h - 1/2,
    d1_0 = (D - D_1)/r_0, d1_1 = (D_1 - D_2)/r_1, d1 = d1_0 + (d1_0 - d1_1) r_0/(r_0 + r_1), d2 = (d1_0 - d1_1)/(r_0 + r_1).
    With one earlier estimate it is second order (x' += phi_2 (D - D_1)/r_0); the first step and the last
    (sigma' = 0) are the DDIM step. Note: d2 ~ h^2 D''/2, so the D'' term enters with half its Taylor weight (as
    in k-diffusion and the DPM-Solver reference code); with the Euler first step the global error is second order
    in h, but with a smaller constant: on the analytic mixture it beats (2M) from 12 steps, and the exactly
    weighted form (2 phi_3 d2) at 8-32 steps (measured for tests/test_solvers.py)."""
    if not previous or sigma_next == 0:
        return ddim_step(x, denoised, sigma, sigma_next, noise, previous)
    h = math.log(sigma / sigma_next)
    phi_2 = math.expm1(-h) / h + 1
    x_next = (sigma_next / sigma) * x - math.expm1(-h) * denoised
    denoised_1, sigma_1 = previous[0]
    r0 = math.log(sigma_1 / sigma) / h
    d1_0 = (denoised - denoised_1) / r0
    if len(previous) == 1:
        return x_next + phi_2 * d1_0
    denoised_2, sigma_2 = previous[1]
    r1 = math.log(sigma_2 / sigma_1) / h
    d1_1 = (denoised_1 - denoised_2) / r1
    d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
    d2 = (d1_0 - d1_1) / (r0 + r1)
    phi_3 = phi_2 / h - 0.5
    return x_next + phi_2 * d1 - phi_3 * d2


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddim": ddim_step, "ancestral": ancestral_step,
                                               "dpmpp_2m": dpmpp_2m_step, "dpmpp_3m": dpmpp_3m_step}


def followed(pred: Prediction, clip_denoised: bool) -> tuple[Tensor, Tensor]:
    """The x0 estimate a step follows and the per-sample norm of what guidance changed in it.

    With the clamp to the data range [-1, 1] on, the change that reaches the sample is clamp(D_w) - clamp(D),
    which is smaller than delta wherever D_w leaves the range (large w)."""
    if not clip_denoised:
        applied = pred.delta
        denoised = pred.denoised
    else:
        denoised = pred.denoised.clamp(-1, 1)
        applied = None if pred.delta is None else denoised - (pred.denoised - pred.delta).clamp(-1, 1)
    norm = denoised.new_zeros(len(denoised)) if applied is None else applied.flatten(1).norm(dim=1)
    return denoised, norm


class Trajectory:
    """One run between steps: from x = sigma_0 * n, each `advance` takes the denoiser's prediction at the
    current (x, sigma) and returns the recorded Step; `final()` is the sample at sigma_N = 0."""

    def __init__(self, sigmas: Tensor | list[float], noise: Noise, shape: tuple[int, ...], sampler: str = "ddim",
                 clip_denoised: bool = False):
        self.sigmas = [float(s) for s in sigmas]
        self.noise, self.step_fn, self.clip_denoised = noise, SAMPLERS[sampler], clip_denoised
        self.index, self.previous = 0, ()
        self.x = self.sigmas[0] * noise.randn(shape)

    @property
    def sigma(self) -> float:
        return self.sigmas[self.index]

    @property
    def done(self) -> bool:
        return self.index == len(self.sigmas) - 1

    def advance(self, pred: Prediction) -> Step:
        denoised, norm = followed(pred, self.clip_denoised)
        sigma, sigma_next = self.sigma, self.sigmas[self.index + 1]
        step = Step(self.index, sigma, self.x, denoised, norm, pred.p_target)
        self.x = self.step_fn(self.x, denoised, sigma, sigma_next, self.noise, self.previous)
        self.previous = ((denoised, sigma), *self.previous)[:MULTISTEP_HISTORY]
        self.index += 1
        return step

    def final(self) -> Step:
        """The sample at sigma = 0 (nothing is evaluated there: p_target is None)."""
        return Step(self.index, 0.0, self.x, self.x, self.x.new_zeros(self.x.shape[0]), None)


def sample(denoise: Callable[[Tensor, float], Prediction], sigmas: Tensor, noise: Noise,
           shape: tuple[int, ...], sampler: str = "ddim", clip_denoised: bool = False) -> Iterator[Step]:
    """Yield num_steps + 1 Steps from x = sigma_0 * n to the sample at sigma_N = 0."""
    trajectory = Trajectory(sigmas, noise, shape, sampler, clip_denoised)
    while not trajectory.done:
        yield trajectory.advance(denoise(trajectory.x, trajectory.sigma))
    yield trajectory.final()


def concat(steps: Sequence[Step]) -> Step:
    """Steps of runs at the same step index, as one Step with their batches concatenated (inverse of split)."""
    p_target = None if any(s.p_target is None for s in steps) else torch.cat([s.p_target for s in steps])
    return Step(steps[0].index, steps[0].sigma, torch.cat([s.x for s in steps]),
                torch.cat([s.denoised for s in steps]), torch.cat([s.guidance_norm for s in steps]), p_target)


def split(step: Step, sizes: list[int]) -> list[Step]:
    """One Step of runs sampled side by side -> one Step per run."""
    fields = [t.split(sizes) if t is not None else [None] * len(sizes)
              for t in (step.x, step.denoised, step.guidance_norm, step.p_target)]
    return [Step(step.index, step.sigma, *parts) for parts in zip(*fields)]


def final(steps: Iterator[Step]) -> Tensor:
    """Drain a trajectory and return the final sample."""
    last = None
    for last in steps:
        pass
    return last.x
