"""Noise levels: the sampling discretisation and the training distribution. The solver never sees rho."""
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
    """ln(sigma) ~ N(P_mean, P_std^2) (Karras et al. 2022, Table 1). Shape (batch_size,)."""
    return (torch.randn(batch_size, generator=generator) * p_std + p_mean).exp()
