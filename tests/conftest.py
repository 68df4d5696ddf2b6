"""Shared fixtures: the analytic 2-D Gaussian mixture (exact oracle), the shipped models (loaded once), a copy
of the weights, and a server started with the tools' launcher (demo/tools/launcher.py)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import network_guard
import pytest
import torch

from demo.toy.mixture import GaussianMixture, MixtureClassifier, three_class_mixture

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
GUARD = network_guard.install_for_session()     # no test reaches past loopback, nor do the processes they start


def pytest_sessionfinish(session, exitstatus):
    network_guard.finish_session(session, GUARD)


@pytest.fixture(scope="session")
def mixture() -> GaussianMixture:
    return three_class_mixture()


@pytest.fixture(scope="session")
def mixture_classifier(mixture) -> MixtureClassifier:
    return MixtureClassifier(mixture)


@pytest.fixture()
def away_from_zero():
    """A toy guidance method, written the way a new method is added: one small class (removed afterwards)."""
    import torch

    from demo.engine.batching import Call
    from demo.engine.guidance import GUIDANCE, Guidance

    class AwayFromZero(Guidance, key="away_from_zero"):
        """Delta = D(x|c) - D(x|0): push away from class 0."""
        nfe_per_step = 2

        def requests(self, net, x, sigma, label, belief):
            return [Call(net, x, label), Call(net, x, torch.zeros_like(label))]

        def combine(self, outputs, x, sigma, label, belief):
            return outputs[0], outputs[0] - outputs[1]

    yield AwayFromZero
    GUIDANCE.pop("away_from_zero")


@pytest.fixture(scope="session")
def models():
    from demo.engine.pipeline import Models
    return Models.load()


ROOT = Path(__file__).resolve().parent.parent


from demo.tools.launcher import free_port, launch_app  # noqa: E402,F401 (the tests' server launcher)


@pytest.fixture(scope="module")
def server():
    with launch_app() as (url, _):
        yield url


@pytest.fixture()
def weights_copy(tmp_path) -> Path:
    """A copy of weights/ that a test may damage."""
    folder = tmp_path / "weights"
    shutil.copytree(ROOT / "weights", folder)
    return folder
