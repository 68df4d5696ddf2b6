"""Sample-quality metrics in the evaluation classifier's feature space (never the guiding classifier's).

- FID (classifier features): the Frechet distance of Heusel et al. (2017) computed on the evaluation
  classifier's penultimate features instead of Inception features; comparable only within this project.
- Precision and recall: Kynkaanniemi et al. (2019), k-NN manifolds in the same feature space.
- Diversity: mean pairwise feature distance.
- Realism of one sample: whether it lies inside the real digits' k-NN manifold (the per-sample form of
  precision), so that a blob the classifier calls "8" is not shown as a good 8.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def evaluate_images(eval_classifier: nn.Module, images: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """One pass of the evaluation classifier over images in [-1, 1]: probabilities (N, NUM_CLASSES) and
    penultimate features (N, feature_dim), the space of every sample metric (on the CPU)."""
    device = next(eval_classifier.parameters()).device
    probs, feats = [], []
    for i in range(0, len(images), batch_size):
        f = eval_classifier.features(images[i:i + batch_size].to(device).clamp(-1, 1))
        feats.append(f.cpu())
        probs.append(eval_classifier.head(f).softmax(1).cpu())
    return torch.cat(probs), torch.cat(feats)


def mean_pairwise_distance(features: Tensor) -> float:
    """Diversity: mean Euclidean distance over all pairs i < j of a set of feature vectors (N, D)."""
    n = len(features)
    if n < 2:
        return 0.0
    distances = torch.cdist(features.double(), features.double())
    return (distances.sum() / (n * (n - 1))).item()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to (N, D) feature sets.

    Tr (S_a S_b)^(1/2) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD matrix."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eigval, eigvec = torch.linalg.eigh(cov_a)
    sqrt_a = eigvec @ torch.diag(eigval.clamp(min=0).sqrt()) @ eigvec.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross).item()


def _radii(features: Tensor, k: int) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi et al. (2019): precision = share of fake points inside the real k-NN manifold,
    recall = share of real points inside the fake k-NN manifold."""
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = _radii(real, k), _radii(fake, k)
    cross = torch.cdist(fake, real)                                   # (N_fake, N_real)
    precision = (cross <= real_radii[None, :]).any(dim=1).double().mean().item()
    recall = (cross.T <= fake_radii[None, :]).any(dim=1).double().mean().item()
    return precision, recall


REALISM_K = 10        # k of the realism radius: >= 95% of real digits outside the reference fall inside (tested)


class Realism:
    """Per-sample realism in evaluation-classifier features: a sample is realistic if it lies within the k-NN
    radius of at least one real reference digit (Kynkaanniemi et al. 2019's manifold, one sample at a time)."""

    def __init__(self, features: Tensor, radii: Tensor):
        self.features, self.radii = features.double(), radii.double()

    @classmethod
    def of(cls, features: Tensor, k: int = REALISM_K) -> Realism:
        return cls(features, _radii(features.double(), k))

    def distance_ratio(self, features: Tensor) -> Tensor:
        """min over reference digits of distance / that digit's radius, (N,): <= 1 means realistic."""
        return (torch.cdist(features.double(), self.features) / self.radii[None]).min(dim=1).values

    def realistic(self, features: Tensor) -> Tensor:
        return self.distance_ratio(features) <= 1
