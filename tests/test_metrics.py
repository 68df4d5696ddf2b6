"""The metric code on synthetic data with known answers."""
from __future__ import annotations

import math

import pytest
import torch

from demo.engine.metrics import (
    frechet_distance,
    mean_pairwise_distance,
    precision_recall,
)


def gaussian(n, d, mean=0.0, std=1.0, seed=0):
    return mean + std * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fid_of_identical_sets_is_zero():
    x = gaussian(2000, 16)
    assert abs(frechet_distance(x, x)) < 1e-8


def test_fid_of_shifted_gaussians_is_the_squared_shift():
    shift = torch.zeros(8, dtype=torch.float64)
    shift[:3] = torch.tensor([1.0, -2.0, 0.5])
    a, b = gaussian(50_000, 8, seed=1), gaussian(50_000, 8, seed=2) + shift
    assert frechet_distance(a, b) == pytest.approx(shift.square().sum().item(), rel=0.02, abs=0.01)


def test_fid_of_scaled_gaussians_is_known():
    """N(0, I) vs N(0, s^2 I) in d dimensions: d (1 - s)^2."""
    d, s = 8, 2.0
    a, b = gaussian(50_000, d, seed=3), gaussian(50_000, d, std=s, seed=4)
    assert frechet_distance(a, b) == pytest.approx(d * (1 - s) ** 2, rel=0.03)


def test_fid_is_symmetric():
    a, b = gaussian(3000, 6, seed=5), gaussian(3000, 6, mean=0.3, std=1.5, seed=6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_precision_recall_of_identical_sets_is_one():
    x = gaussian(500, 8)
    assert precision_recall(x, x) == (1.0, 1.0)


def test_precision_recall_of_disjoint_sets_is_zero():
    assert precision_recall(gaussian(300, 4), gaussian(300, 4, mean=50.0, seed=1)) == (0.0, 0.0)


def test_collapsed_fakes_have_high_precision_and_low_recall():
    real = gaussian(1000, 2, seed=7)
    fake = gaussian(1000, 2, std=0.1, seed=8)                # mode collapse onto the centre
    precision, recall = precision_recall(real, fake)
    assert precision > 0.95 and recall < 0.2


def test_mean_pairwise_distance():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert mean_pairwise_distance(points) == pytest.approx(5.0)
    assert mean_pairwise_distance(points[:1]) == 0.0
    # for N(0, I) in d dims the expected distance is sqrt(2) * E||z|| ~ sqrt(2 d) for large d
    assert mean_pairwise_distance(gaussian(800, 64)) == pytest.approx(math.sqrt(2 * 64), rel=0.03)


@pytest.mark.slow
def test_realism_flags_blobs_noise_and_collapsed_samples_but_not_real_digits(models):
    """The per-sample realism marker: real digits outside the reference set pass (>= 95%), while noise, a
    blob, and autoguidance far past its collapse point (w = 8 with the guide that collapses early) are flagged,
    whatever the classifier calls them."""
    from demo.engine.metrics import evaluate_images
    from demo.engine.pipeline import Request, generate_final
    from demo.science.data import load_mnist
    real, _ = load_mnist("train")                       # the reference is the 500 held-out digits
    _, features = evaluate_images(models.eval_classifier, real[::3])
    assert models.realism.realistic(features).float().mean() >= 0.95
    blob = torch.full((2, 1, 28, 28), -1.0)
    blob[:, :, 8:20, 8:20] = 1.0
    noise = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    _, features = evaluate_images(models.eval_classifier, torch.cat([blob, noise]))
    assert not models.realism.realistic(features).any()
    collapsed = torch.cat([generate_final(models, Request(label=c, method="autoguidance", weight=8.0, num_samples=4,
                                                          seed=s, guide="collapses_early"))
                           for c in (0, 3, 8) for s in (0, 1)])
    _, features = evaluate_images(models.eval_classifier, collapsed)
    assert models.realism.realistic(features).float().mean() <= 0.4
