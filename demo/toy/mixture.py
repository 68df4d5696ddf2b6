"""A 2-D Gaussian mixture whose noisy densities, denoisers and classifier are exact.

Under the same noise process as the image model, x = y + sigma * n, every component N(mu_k, S_k) becomes
N(mu_k, S_k + sigma^2 I), so p_sigma(x|c), p_sigma(x) and p_sigma(c|x) are mixtures in closed form and
  D(x; sigma, c) = E[y | x, c] = sum_k r_k(x) (mu_k + S_k (S_k + sigma^2 I)^-1 (x - mu_k))   (Tweedie)
with r_k the posterior responsibilities of the components of class c. Labels >= num_classes (NULL_LABEL)
mean "any class": the unconditional model, as in classifier-free guidance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianMixture:
    """Components k with weight w_k (sums to 1), mean mu_k (K, 2), covariance S_k (K, 2, 2), class c_k."""
    weights: Tensor
    means: Tensor
    covs: Tensor
    classes: Tensor
    num_classes: int

    def widened(self, extra_std: float) -> GaussianMixture:
        """The same mixture with every covariance inflated by extra_std^2 I: a "weak" model (Karras et al. 2024)."""
        eye = torch.eye(2, dtype=self.covs.dtype)
        return GaussianMixture(self.weights, self.means, self.covs + extra_std**2 * eye, self.classes,
                               self.num_classes)

    def _component_terms(self, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """log(w_k N(x; mu_k, S_k + sigma^2 I)) (B, K) and (S_k + sigma^2 I)^-1 (x - mu_k) (B, K, 2).

        2x2 inverses in closed form: [[a, b], [b, d]]^-1 = [[d, -b], [-b, a]] / (a d - b^2)."""
        var = torch.as_tensor(sigma, dtype=x.dtype) ** 2
        a, b, d = self.covs[:, 0, 0] + var, self.covs[:, 0, 1], self.covs[:, 1, 1] + var      # (K,)
        det = a * d - b * b
        dx, dy = x[:, None, 0] - self.means[None, :, 0], x[:, None, 1] - self.means[None, :, 1]   # (B, K)
        gain = torch.stack([(d * dx - b * dy) / det, (a * dy - b * dx) / det], dim=-1)          # (B, K, 2)
        maha = dx * gain[..., 0] + dy * gain[..., 1]
        log_terms = self.weights.log() - 0.5 * det.log() - math.log(2 * math.pi) - 0.5 * maha
        return log_terms, gain

    def _mask(self, label: Tensor, batch: int) -> Tensor:
        label = torch.as_tensor(label).expand(batch)
        return (self.classes[None] == label[:, None]) | (label[:, None] >= self.num_classes)   # (B, K)

    def log_prob(self, x: Tensor, sigma: float | Tensor, label: Tensor | int) -> Tensor:
        """log p_sigma(x | c) (B,); label >= num_classes gives log p_sigma(x)."""
        log_terms, _ = self._component_terms(x, sigma)
        mask = self._mask(label, len(x))
        log_prior = torch.where(mask, self.weights[None], 0).sum(1).log()       # p(c)
        return torch.where(mask, log_terms, -math.inf).logsumexp(1) - log_prior

    def __call__(self, x: Tensor, sigma: float | Tensor, label: Tensor | int) -> Tensor:
        """Exact denoiser D(x; sigma, c) = E[y | x, c], (B, 2).

        Per component, E[y | x, k] = mu_k + S_k (S_k + sigma^2 I)^-1 (x - mu_k) = x - sigma^2 gain_k."""
        log_terms, gain = self._component_terms(x, sigma)
        resp = torch.where(self._mask(label, len(x)), log_terms, -math.inf).softmax(1)      # (B, K)
        return x - torch.as_tensor(sigma, dtype=x.dtype) ** 2 * (resp[..., None] * gain).sum(1)

    def logits(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """log p_sigma(c | x) for every class (B, num_classes): the exact noisy classifier."""
        log_terms, _ = self._component_terms(x, sigma)
        onehot = self.classes[None, :] == torch.arange(self.num_classes)[:, None]           # (C, K)
        per_class = torch.where(onehot[None], log_terms[:, None, :], -math.inf).logsumexp(2)
        return per_class - per_class.logsumexp(1, keepdim=True)

    def sample(self, n: int, label: int, generator: torch.Generator) -> Tensor:
        """n exact samples of p(y | c)."""
        mask = self.classes == label
        k = torch.multinomial(torch.where(mask, self.weights, 0), n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)[k]
        z = torch.randn(n, 2, 1, generator=generator, dtype=self.means.dtype)
        return self.means[k] + (chol @ z)[..., 0]


class MixtureClassifier:
    """The exact classifier of a mixture with the `classifier(x, sigma) -> logits` interface."""

    def __init__(self, mixture: GaussianMixture):
        self.mixture = mixture

    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        return self.mixture.logits(x, sigma)


def _mixture(means, stds, classes, weights, correlation: float = 0.0) -> GaussianMixture:
    means = torch.tensor(means, dtype=torch.float64)
    covs = torch.stack([torch.tensor([[sx**2, correlation * sx * sy], [correlation * sx * sy, sy**2]],
                                     dtype=torch.float64) for sx, sy in stds])
    weights = torch.tensor(weights, dtype=torch.float64)
    classes = torch.tensor(classes)
    return GaussianMixture(weights / weights.sum(), means, covs, classes, int(classes.max()) + 1)


def three_class_mixture(separation: float = 2.0, std: float = 0.5) -> GaussianMixture:
    """Three classes on a circle; each has a main component and a smaller one nearer the centre."""
    angles = torch.tensor([90.0, 210.0, 330.0], dtype=torch.float64).deg2rad()
    centres = separation * torch.stack([angles.cos(), angles.sin()], 1)
    means = torch.cat([centres, 0.35 * centres]).tolist()
    return _mixture(means, [(std, std * 0.7)] * 6, [0, 1, 2, 0, 1, 2], [3, 3, 3, 2, 2, 2], correlation=0.14)


PRESETS = {
    "three classes, well separated": lambda: three_class_mixture(2.5, 0.45),
    "three classes, overlapping": lambda: three_class_mixture(1.2, 0.6),
    "four classes, elongated": lambda: _mixture(
        [[-1.5, 1.0], [1.5, 1.0], [-1.5, -1.0], [1.5, -1.0], [0.0, 0.0]],
        [(0.8, 0.3), (0.8, 0.3), (0.3, 0.8), (0.3, 0.8), (0.4, 0.4)],
        [0, 1, 2, 3, 0], [2, 2, 2, 2, 1], correlation=0.3),
}
