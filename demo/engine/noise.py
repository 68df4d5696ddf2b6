"""Noise: the noise levels (the sampling discretisation and the training distribution; the solver never sees\nrho) and the seeded Gaussian noise a run draws."""
from __future__ import annotations

import torch
from torch import Tensor


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022), Eq. 5: sigma_i for i = 0..N-1, then sigma_N = 0. Shape (num_steps + 1,), float64."""
    if num_steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    inv_rho = 1 / rho
    sigmas = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def training_sigmas(batch_size: int, p_mean: float, p_std: float, generator: torch.Generator) -> Tensor:
    """ln(sigma) ~ N(P_mean, P_std^2) (Karras et al. 2022, Table 1). Shape (batch_size,), on the generator's device."""
    return (torch.randn(batch_size, generator=generator, device=generator.device) * p_std + p_mean).exp()


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


class BatchNoise:
    """One seeded generator for the whole batch: cheaper for thousands of 2-D points (toy model); the noise
    of a sample depends on the batch size."""

    def __init__(self, seed: int, num_samples: int, device: torch.device | str = "cpu", dtype=torch.float32):
        self.generator = torch.Generator().manual_seed(seed)
        self.num_samples, self.device, self.dtype = num_samples, device, dtype

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn((self.num_samples, *shape), generator=self.generator, dtype=self.dtype).to(self.device)


Noise = NoiseSource | BatchNoise
