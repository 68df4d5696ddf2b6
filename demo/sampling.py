"""The one sampler loop. It knows nothing about guidance, rho or recording: it yields typed steps.

`denoise(x, sigma) -> Prediction` is the (guided) denoiser, `sigmas` a decreasing sequence ending in 0. The
batch may hold several runs side by side (pipeline.sample_runs): every step here is elementwise per sample.
Samplers (Karras et al. 2022, Sec. 3 / k-diffusion):
  ddim       deterministic: Euler on the probability-flow ODE, x' = D + (sigma'/sigma)(x - D). In the
             sigma parametrisation this is exactly DDIM with eta = 0 (Song et al. 2021; Karras et al. 2022, Sec. 3).
  ancestral  stochastic: DDPM-like ancestral step (eta = 1): down to sigma_down, then add sigma_up fresh noise.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .guidance import Prediction


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
    denoised: Tensor             # guided x0 estimate D_w(x; sigma) (the final sample at sigma = 0)
    guidance_norm: Tensor        # ||D_w - D(x|c)|| per sample, (B,): how much guidance moved the estimate
    p_target: Tensor | None      # p(c | x, sigma) from the noisy classifier, (B,), if a probe was given


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


def sample(denoise: Callable[[Tensor, float], Prediction], sigmas: Tensor, noise: Noise,
           shape: tuple[int, ...], sampler: str = "ddim", clip_denoised: bool = False,
           probe: Callable[[Tensor, float], Tensor] | None = None) -> Iterator[Step]:
    """Yield num_steps + 1 Steps from x = sigma_0 * n to the sample at sigma_N = 0.

    p(c|x) per step is the Prediction's (the guidance computes it, batched with its own classifier calls);
    `probe(x, sigma) -> p(c|x, sigma)`, optional, gives it for the final sample.
    """
    step_fn = SAMPLERS[sampler]
    sigma_list = [float(s) for s in sigmas]
    x = sigma_list[0] * noise.randn(shape)
    for i, (sigma, sigma_next) in enumerate(zip(sigma_list[:-1], sigma_list[1:])):
        pred = denoise(x, sigma)
        denoised = pred.denoised.clamp(-1, 1) if clip_denoised else pred.denoised
        yield Step(i, sigma, x, denoised, pred.delta.flatten(1).norm(dim=1), pred.p_target)
        x = step_fn(x, denoised, sigma, sigma_next, noise)
    p_final = probe(x, sigma_list[-2]) if probe is not None else None   # classifier's lowest trained sigma
    yield Step(len(sigma_list) - 1, 0.0, x, x, x.new_zeros(x.shape[0]), p_final)


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
