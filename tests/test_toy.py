"""The exact 2-D lab: tilted density, presets, and what CFG does (and does not) sample."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from demo.engine.config import Interval
from demo.toy import lab as toy_lab
from demo.toy.mixture import PRESETS


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("weight", [0.0, 1.0, 4.0])
def test_tilted_density_integrates_to_one(preset, weight):
    mixture = PRESETS[preset]()
    _, _, cond, tilted = toy_lab.density_grid(mixture, 0, weight, resolution=241, extent=7.0)
    assert toy_lab.total_mass(cond, 7.0) == pytest.approx(1.0, abs=1e-6)
    assert toy_lab.total_mass(tilted, 7.0) == pytest.approx(1.0, abs=1e-6)
    # the grid is wide enough that the normalisation is the true one: p(x|c) itself integrates to 1
    xx, yy, _, _ = toy_lab.density_grid(mixture, 0, weight, resolution=241, extent=7.0)
    points = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1))
    raw = mixture.log_prob(points, 0.0, 0).exp().numpy()
    assert raw.sum() * (14 / 240) ** 2 == pytest.approx(1.0, abs=1e-4)


def test_weight_zero_tilted_density_is_the_class_density(mixture):
    _, _, cond, tilted = toy_lab.density_grid(PRESETS["three classes, overlapping"](), 1, 0.0)
    np.testing.assert_allclose(cond, tilted)


def test_all_methods_share_the_initial_noise_and_w0_is_unguided():
    result = toy_lab.run_toy("three classes, overlapping", 1, 0.0, num_steps=20, num_samples=64)
    for method, path in result.paths.items():
        np.testing.assert_array_equal(path, result.paths["unguided"])
        np.testing.assert_array_equal(result.finals[method], result.finals["unguided"])
    guided = toy_lab.run_toy("three classes, overlapping", 1, 2.0, num_steps=20, num_samples=64)
    for method, path in guided.paths.items():
        np.testing.assert_array_equal(path[0], result.paths["unguided"][0])
        assert method == "unguided" or not np.array_equal(guided.finals[method], result.finals["unguided"])


def test_unguided_samples_follow_the_class_density():
    result = toy_lab.run_toy("three classes, well separated", 2, 0.0, num_steps=100, num_samples=4000,
                             methods=["unguided"])
    xx, yy, cond, _ = toy_lab.density_grid(result.mixture, 2, 0.0)
    mean, std = toy_lab.grid_moments(xx, yy, cond)
    x = result.finals["unguided"]
    np.testing.assert_allclose(x.mean(0), mean, atol=0.06)
    np.testing.assert_allclose(x.std(0), std, rtol=0.08)


def test_cfg_does_not_sample_the_tilted_density_at_large_w():
    """A known subtlety: CFG's per-noise-level tilt is not the score of the tilted data density (at large w the
    samples are more concentrated than q_w), while it is nearly right at w -> 0."""
    result = toy_lab.run_toy("three classes, overlapping", 0, 6.0, num_steps=100, num_samples=4000, methods=["cfg"])
    xx, yy, _, tilted = toy_lab.density_grid(result.mixture, 0, 6.0)
    mean, std = toy_lab.grid_moments(xx, yy, tilted)
    x = result.finals["cfg"]
    assert np.any(np.abs(x.std(0) / std - 1) > 0.15), (x.std(0), std)


def test_guidance_field_is_zero_for_unguided_and_nonzero_for_cfg():
    result = toy_lab.run_toy("three classes, overlapping", 0, 3.0, num_steps=10, num_samples=16,
                             methods=["unguided", "cfg"])
    *_, u, v = toy_lab.guidance_field(result, "unguided", 5)
    assert not np.any(u) and not np.any(v)
    *_, u, v = toy_lab.guidance_field(result, "cfg", 5)
    assert np.abs(u).max() > 0


def test_guidance_field_follows_the_runs_guidance_interval():
    """Outside the interval the run was sampled with, guidance is off, and so is its drawn field."""
    result = toy_lab.run_toy("three classes, overlapping", 0, 3.0, num_steps=10, num_samples=16,
                             interval=Interval(5.0, 80.0), methods=["cfg"])
    inside, outside = 1, 8                                         # sigma ~ 40 and ~ 0.05
    assert toy_lab.field_sigma(result, inside) > 5 > toy_lab.field_sigma(result, outside)
    assert np.abs(toy_lab.guidance_field(result, "cfg", inside)[2]).max() > 0
    *_, u, v = toy_lab.guidance_field(result, "cfg", outside)
    assert not np.any(u) and not np.any(v)


def test_figure_clamps_any_field_step():
    result = toy_lab.run_toy("three classes, overlapping", 0, 3.0, num_steps=5, num_samples=16, methods=["cfg"])
    for step in (-3, 4, 5, 999):
        figure = toy_lab.figure(result, step)
        assert f"{toy_lab.field_sigma(result, step):.3g}" in figure._suptitle.get_text()


def test_toy_keeps_only_what_it_draws():
    """Memory does not grow with points x steps: a few trajectories, plus the final points."""
    result = toy_lab.run_toy("three classes, overlapping", 0, 3.0, num_steps=200, num_samples=3000)
    for method in result.paths:
        assert result.paths[method].shape == (201, toy_lab.TRACKED, 2)
        assert result.finals[method].shape == (3000, 2)


def test_toy_run_can_be_stopped_between_steps():
    request = toy_lab.parse_toy("three classes, overlapping", 0, 3.0, 1000, 5000, 0)
    live = toy_lab.ToyLab(budget=1000).run_live(request)        # a laptop operator may allow this size
    start = time.perf_counter()
    for done, total in live:
        assert total == 1001
        if done == 3:
            break                                                  # what a cancelled handler does
    assert time.perf_counter() - start < 1.0 and live.result is None
