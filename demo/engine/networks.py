"""Networks, all with one interface (EDM, Karras et al. 2022):

- Denoiser:        D(x, sigma, label) -> x0 estimate, label = NULL_LABEL for the unconditional model.
- NoisyClassifier: logits(x, sigma) of p(label | x, sigma).
- EvalClassifier:  clean-data CNN for metrics only: logits(x), features(x).

Pixels are in [-1, 1]; x = y + sigma * n (variance-exploding form, which is DDPM/DDIM up to scaling).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from demo.engine.config import ClassifierConfig, EvalClassifierConfig, UNetConfig


def as_sigma(sigma: float | Tensor, x: Tensor) -> Tensor:
    """Noise level as a (B,) tensor on x's device."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma


def edm_scalings(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Preconditioning of Karras et al. (2022), Table 1: c_skip, c_out, c_in, c_noise, each (B, 1, 1, 1) but c_noise (B,)."""
    s2 = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / s2
    c_out = sigma * sigma_data / s2.sqrt()
    c_in = 1 / s2.sqrt()
    c_noise = sigma.log() / 4
    view = (-1, 1, 1, 1)
    return c_skip.view(view), c_out.view(view), c_in.view(view), c_noise


class FourierEmbedding(nn.Module):
    """Sinusoidal embedding of c_noise followed by a 2-layer MLP."""

    def __init__(self, emb_dim: int, num_freqs: int = 32):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), num_freqs)))
        self.mlp = nn.Sequential(nn.Linear(2 * num_freqs, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise[:, None] * self.freqs[None]                  # (B, F)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """Pre-activation residual block with FiLM-style (scale, shift) conditioning on the embedding."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm0, self.conv0 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * c_out)
        self.norm1, self.conv1 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv1(self.dropout(h))


class Encoder(nn.Module):
    """Shared trunk: one ResBlock per resolution, 2x average-pool between them. Returns every level's output.

    With patch = p the p x p pixel blocks become channels first (space-to-depth, as DiT's patchify), so a
    28x28 digit is processed at 14x14 for p = 2: a quarter of the pixels, wider convolutions, which run near
    the CPU's peak instead of being bound by per-pixel memory traffic (measured in `python -m demo.bench`).
    """

    def __init__(self, channels: tuple[int, ...], emb_dim: int, dropout: float = 0.0, patch: int = 1):
        super().__init__()
        self.patch = patch
        self.stem = nn.Conv2d(patch * patch, channels[0], 3, padding=1)
        c_prev = [channels[0], *channels[:-1]]
        self.blocks = nn.ModuleList(ResBlock(a, b, emb_dim, dropout) for a, b in zip(c_prev, channels))

    def forward(self, x: Tensor, emb: Tensor) -> list[Tensor]:
        h, skips = self.stem(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x), []
        for level, block in enumerate(self.blocks):
            if level > 0:
                h = F.avg_pool2d(h, 2)                                  # 28 -> 14 -> 7
            h = block(h, emb)
            skips.append(h)
        return skips


class Denoiser(nn.Module):
    """D(x, sigma, label): class-conditional U-Net F wrapped in EDM preconditioning (Karras et al. 2022, Eq. 7)."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        ch, emb = config.channels, config.emb_dim
        self.noise_emb = FourierEmbedding(emb)
        self.label_emb = nn.Embedding(config.num_classes + 1, emb)    # last row = NULL_LABEL
        self.encoder = Encoder(ch, emb, config.dropout, config.patch)
        self.mid = ResBlock(ch[-1], ch[-1], emb, config.dropout)
        self.decoder = nn.ModuleList(
            ResBlock(ch[i] + (ch[i + 1] if i + 1 < len(ch) else ch[i]), ch[i], emb, config.dropout)
            for i in reversed(range(len(ch))))
        self.out_norm = group_norm(ch[0])
        self.out_conv = nn.Conv2d(ch[0], config.patch**2, 3, padding=1)     # depth-to-space back to pixels
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def raw(self, x_in: Tensor, c_noise: Tensor, label: Tensor) -> Tensor:
        """F_theta(c_in x, c_noise, label)."""
        emb = F.silu(self.noise_emb(c_noise) + self.label_emb(label))
        skips = self.encoder(x_in, emb)
        h = self.mid(skips[-1], emb)
        for block, skip in zip(self.decoder, reversed(skips)):
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")   # 7 -> 14 -> 28
            h = block(torch.cat([h, skip], dim=1), emb)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return F.pixel_shuffle(out, self.config.patch) if self.config.patch > 1 else out

    def forward(self, x: Tensor, sigma: float | Tensor, label: int | Tensor) -> Tensor:
        sigma = as_sigma(sigma, x)
        label = torch.as_tensor(label, device=x.device).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = edm_scalings(sigma, self.config.sigma_data)
        return c_skip * x + c_out * self.raw(c_in * x, c_noise, label)


class NoisyClassifier(nn.Module):
    """p(label | x, sigma): time-conditioned classifier on noisy inputs (Dhariwal & Nichol 2021, Sec. 4)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        self.noise_emb = FourierEmbedding(config.emb_dim)
        self.encoder = Encoder(config.channels, config.emb_dim, patch=config.patch)
        self.head = nn.Sequential(group_norm(config.channels[-1]), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(config.channels[-1], config.num_classes))

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Logits (B, num_classes)."""
        sigma = as_sigma(sigma, x)
        _, _, c_in, c_noise = edm_scalings(sigma, self.config.sigma_data)
        emb = F.silu(self.noise_emb(c_noise))
        return self.head(self.encoder(c_in * x, emb)[-1])


class EvalClassifier(nn.Module):
    """Clean-image CNN (conv-BN-ReLU, VGG-style) for metrics; never used for guidance."""

    def __init__(self, config: EvalClassifierConfig = EvalClassifierConfig()):
        super().__init__()
        self.config = config
        layers, c_prev = [], 1
        for level, c in enumerate(config.channels):
            layers += [nn.Conv2d(c_prev, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            layers.append(nn.MaxPool2d(2) if level < len(config.channels) - 1 else nn.AdaptiveAvgPool2d(1))
            c_prev = c
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(config.dropout),
                                   nn.Linear(c_prev, config.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, feature_dim), the space of the FID/precision/recall metrics."""
        return self.trunk(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
