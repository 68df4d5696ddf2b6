"""The one sampler loop. It knows nothing about guidance, rho or recording: it yields typed steps.

`denoise(x, sigma) -> Prediction` is any denoiser (guided or not), `sigmas` a decreasing sequence ending in 0.
The batch may hold several runs side by side (pipeline.sample_runs): every step here is elementwise per sample.
Samplers (Karras et al. 2022, Sec. 3 / k-diffusion):
  ddim       deterministic: Euler on the probability-flow ODE, x' = D + (sigma'/sigma)(x - D). In the
             sigma parametrisation this is exactly DDIM with eta = 0 (Song et al. 2021; Karras et al. 2022, Sec. 3).
  ancestral  stochastic: DDPM-like ancestral step (eta = 1): down to sigma_down, then add sigma_up fresh noise.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


class Prediction(NamedTuple):
    """What a denoiser returns to the sampler: its x0 estimate and, optionally, two records for the trajectory."""
    denoised: Tensor                  # x0 estimate D(x; sigma) the step follows (guided, for a guided denoiser)
    delta: Tensor | None = None       # how much of it is guidance: D_w - D(x|c) (None: nothing)
    p_target: Tensor | None = None    # p(c | x, sigma) if the denoiser computed it, (B,)


class NoiseSource:
    """Seeded per-sample Gaussian noise (like EDM's StackedRandomGenerator): sample k's noise depends only
    on (seed, k), never on how many samples are drawn, and every draw is reproducible bit for bit."""

    def __init__(self, seed: int, num_samples: int, device: torch.device | str = "cpu"):
        root = torch.Generator().manual_seed(seed)
        seeds = torch.randint(0, 2**62, (num_samples,), generator=root).tolist()   # prefix-stable
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.device = device

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        """(num_samples, *shape) standard normal noise, drawn on the CPU (same bits on every device)."""
        return torch.stack([torch.randn(shape, generator=g) for g in self.generators]).to(self.device)


class ConcatNoise:
    """Several runs' noise sources side by side along the batch (runs sampled together in lockstep)."""

    def __init__(self, sources: list[NoiseSource]):
        self.sources = sources

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        return torch.cat([source.randn(shape) for source in self.sources])


class BatchNoise:
    """One seeded generator for the whole batch: cheaper for thousands of 2-D points (toy model); the noise
    of a sample depends on the batch size."""

    def __init__(self, seed: int, num_samples: int, device: torch.device | str = "cpu", dtype=torch.float32):
        self.generator = torch.Generator().manual_seed(seed)
        self.num_samples, self.device, self.dtype = num_samples, device, dtype

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn((self.num_samples, *shape), generator=self.generator, dtype=self.dtype).to(self.device)


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


Noise = NoiseSource | ConcatNoise | BatchNoise


def ddim_step(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, noise: Noise) -> Tensor:
    """Euler step of dx/dsigma = (x - D) / sigma (Karras et al. 2022, Eq. 3 / Alg. 1 without the Heun term)."""
    return denoised + (sigma_next / sigma) * (x - denoised)


def ancestral_step(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, noise: Noise) -> Tensor:
    """Ancestral step: sigma_up^2 = sigma'^2 (sigma^2 - sigma'^2) / sigma^2, sigma_down^2 = sigma'^2 - sigma_up^2."""
    sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    x_next = denoised + (sigma_down / sigma) * (x - denoised)
    return x_next + sigma_up * noise.randn(x.shape[1:]) if sigma_next > 0 else x_next


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddim": ddim_step, "ancestral": ancestral_step}


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


def sample(denoise: Callable[[Tensor, float], Prediction], sigmas: Tensor, noise: Noise,
           shape: tuple[int, ...], sampler: str = "ddim", clip_denoised: bool = False) -> Iterator[Step]:
    """Yield num_steps + 1 Steps from x = sigma_0 * n to the sample at sigma_N = 0 (whose p_target is None:
    nothing is evaluated there)."""
    step_fn = SAMPLERS[sampler]
    sigma_list = [float(s) for s in sigmas]
    x = sigma_list[0] * noise.randn(shape)
    for i, (sigma, sigma_next) in enumerate(zip(sigma_list[:-1], sigma_list[1:])):
        pred = denoise(x, sigma)
        denoised, norm = followed(pred, clip_denoised)
        yield Step(i, sigma, x, denoised, norm, pred.p_target)
        x = step_fn(x, denoised, sigma, sigma_next, noise)
    yield Step(len(sigma_list) - 1, 0.0, x, x, x.new_zeros(x.shape[0]), None)


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
