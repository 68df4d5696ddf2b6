"""Sample quality of the shipped weights, measured with the separate evaluation classifier."""
from __future__ import annotations

import pytest
import torch

from demo.engine.config import LIMITS, PRESETS, SamplerConfig
from demo.engine.guidance import METHODS
from demo.engine.pipeline import Request, generate, generate_final
from demo.science import findings
from demo.science.data import load_mnist
from demo.science.evaluate import (
    DOCUMENTED_CG_WEIGHT,
    class_accuracy,
    sample_all_classes,
)

PER_CLASS = 100
DDIM_32 = SamplerConfig(num_steps=32, sampler="ddim")


def test_evaluation_classifier_is_accurate_on_held_out_digits(models):
    images, labels = load_mnist("test")
    assert class_accuracy(models, images, labels) >= 0.99


@pytest.mark.parametrize("method,weight,threshold", [
    ("unguided", 0.0, 0.80),
    ("cfg", 3.0, 0.97),
    ("classifier", DOCUMENTED_CG_WEIGHT, 0.90),
])
@pytest.mark.slow
def test_accuracy_of_100_samples_per_class(models, method, weight, threshold):
    images, labels = sample_all_classes(models, method, weight, PER_CLASS, seed=0, sampler=DDIM_32)
    accuracy = class_accuracy(models, images, labels)
    print(f"{method} w={weight}: accuracy {accuracy:.3f}")
    assert accuracy >= threshold


@pytest.mark.slow
def test_the_app_s_default_preset_keeps_every_method_accurate_at_its_default_w(models):
    """What the app serves (PRESETS[0]: 10 DDIM steps, guidance inside its interval; each method at its default w
    from the stored evaluation): 50 samples per class each, read by the evaluation classifier. The evaluation
    measured 0.92 unguided and 0.97-0.99 guided (250 x 2 seeds); a guided method below 0.93, or below unguided,
    means the cost cut or the defaults lost what guidance is for."""
    fast = PRESETS[0]
    accuracy = {}
    for method in METHODS:
        weight = 0.0 if method == "unguided" else findings.default_weight(method)
        images, labels = sample_all_classes(models, method, weight, 50, seed=0, sampler=fast.sampler,
                                            interval=fast.interval)
        accuracy[method] = class_accuracy(models, images, labels)
    print("fast preset, default w:", {m: round(a, 3) for m, a in accuracy.items()})
    assert accuracy["unguided"] >= 0.80, accuracy
    assert all(a >= max(0.93, accuracy["unguided"]) for m, a in accuracy.items() if m != "unguided"), accuracy


def test_same_seed_is_bitwise_reproducible_and_w_keeps_the_initial_noise(models):
    request = Request(label=7, method="cfg", weight=2.0, num_samples=4, seed=11)
    assert torch.equal(generate_final(models, request), generate_final(models, request))
    first = next(iter(generate(models, request, record=False)))
    other = next(iter(generate(models, Request(label=7, method="cfg", weight=6.0, num_samples=4, seed=11),
                               record=False)))
    assert torch.equal(first.x, other.x)


@pytest.mark.slow
@pytest.mark.parametrize("num_steps,sampler", [(1, "ddim"), (1, "ancestral"), (1000, "ddim"), (1000, "ancestral")])
def test_extreme_step_counts_give_finite_images(models, num_steps, sampler):
    request = Request(label=5, method="cfg", weight=2.0, num_samples=1, seed=3,
                      sampler=SamplerConfig(num_steps=num_steps, sampler=sampler))
    x = generate_final(models, request)
    assert x.shape == (1, 1, 28, 28) and torch.isfinite(x).all() and x.abs().max() <= 1.0 + 1e-6


@pytest.mark.parametrize("method", ["classifier", "cfg", "gfcg", "autoguidance"])
def test_maximum_weight_never_produces_nan(models, method):
    request = Request(label=8, method=method, weight=LIMITS.max_weight, num_samples=2, seed=0, sampler=SamplerConfig(num_steps=8))
    steps = list(generate(models, request))
    assert all(torch.isfinite(s.x).all() and torch.isfinite(s.denoised).all() for s in steps)
