"""Sample quality measured with the separate evaluation classifier (never the guiding one)."""
from __future__ import annotations

import torch
from torch import Tensor

from .config import NUM_CLASSES, Interval, SamplerConfig
from .pipeline import Models, classify, sample_labels
from .sampling import final

# The classifier-guidance weight whose accuracy README and tests quote (w multiplies grad log p, guided-diffusion
# `classifier_scale`); CG needs a larger w than CFG for the same effect because a small noisy classifier's
# gradients are weak at high noise.
DOCUMENTED_CG_WEIGHT = 3.0


def sample_all_classes(models: Models, method: str, weight: float, per_class: int, seed: int = 0,
                       sampler: SamplerConfig = SamplerConfig(), interval: Interval = Interval(),
                       batch_size: int = 250) -> tuple[Tensor, Tensor]:
    """per_class samples of every class: images (N, 1, 28, 28) and their target labels (N,)."""
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    images = [final(sample_labels(models, method, weight, labels[i:i + batch_size], seed + i, sampler, interval,
                                  record=False)).cpu() for i in range(0, len(labels), batch_size)]
    return torch.cat(images), labels


def class_accuracy(models: Models, images: Tensor, labels: Tensor) -> float:
    return (classify(models, images).argmax(1) == labels).float().mean().item()
