"""Samples as pixels: tensors in [-1, 1] -> uint8 arrays, white digits on black as in MNIST."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, 1, H, W) or (B, H, W) in [-1, 1] -> (B, H, W) uint8, white digits on black as in MNIST."""
    images = images.detach().float().cpu().reshape(-1, *images.shape[-2:])
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def noisy_to_uint8(x: Tensor, sigma: float) -> np.ndarray:
    """A noisy state x = y + sigma n shown at unit scale: x / sqrt(1 + sigma^2)."""
    return to_uint8(x / math.sqrt(1 + sigma**2))
