"""Sample-quality metrics in the evaluation classifier's feature space (never the guiding classifier's)."""
from __future__ import annotations

import torch
from torch import Tensor


def mean_pairwise_distance(features: Tensor) -> float:
    """Diversity: mean Euclidean distance over all pairs i < j of a set of feature vectors (N, D)."""
    n = len(features)
    if n < 2:
        return 0.0
    distances = torch.cdist(features.double(), features.double())
    return (distances.sum() / (n * (n - 1))).item()
