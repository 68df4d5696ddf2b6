"""Shared fixtures: the analytic 2-D Gaussian mixture (exact oracle) and the shipped models (loaded once)."""
from __future__ import annotations

import os

import pytest
import torch

from demo.toy import GaussianMixture, MixtureClassifier, three_class_mixture

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def mixture() -> GaussianMixture:
    return three_class_mixture()


@pytest.fixture(scope="session")
def mixture_classifier(mixture) -> MixtureClassifier:
    return MixtureClassifier(mixture)


@pytest.fixture(scope="session")
def models():
    from demo.pipeline import Models
    return Models.load()
