"""The sampler loop: trajectory shape, schedules, determinism, exactness on the analytic mixture."""
from __future__ import annotations

import pytest
import torch

from demo.engine.config import Interval
from demo.engine.guidance import make_guidance
from demo.engine.noise import BatchNoise, NoiseSource, karras_sigmas
from demo.engine.samplers import final, sample


def run(mixture, method="unguided", weight=0.0, sampler="ddim", num_steps=32, seed=0, n=256, label=0,
        noise_cls=BatchNoise, **models):
    guidance = make_guidance(method, weight, Interval(), **models)
    c = torch.full((n,), label, dtype=torch.long)
    sigmas = karras_sigmas(num_steps, 0.002, 80.0)
    noise = noise_cls(seed, n)
    steps = sample(lambda x, s: guidance(mixture, x.double(), s, c), sigmas, noise, (2,), sampler)
    return list(steps)


@pytest.mark.parametrize("num_steps", [1, 2, 7, 32, 1000])
def test_karras_sigmas(num_steps):
    sigmas = karras_sigmas(num_steps, 0.002, 80.0)
    assert sigmas.shape == (num_steps + 1,)
    assert sigmas[0] == 80.0 and sigmas[-1] == 0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    if num_steps > 1:
        assert torch.isclose(sigmas[-2], torch.tensor(0.002, dtype=torch.float64))


@pytest.mark.parametrize("sampler", ["ddim", "ancestral", "dpmpp_2m"])
def test_trajectory_has_one_state_per_step_plus_final(mixture, sampler):
    steps = run(mixture, sampler=sampler, num_steps=12, n=4)
    assert [s.index for s in steps] == list(range(13))
    assert steps[-1].sigma == 0 and torch.equal(steps[-1].x, steps[-1].denoised)
    assert [s.sigma for s in steps[:-1]] == [float(s) for s in karras_sigmas(12, 0.002, 80.0)[:-1]]


@pytest.mark.parametrize("sampler", ["ddim", "ancestral", "dpmpp_2m"])
def test_same_seed_is_bitwise_reproducible(mixture, sampler):
    a, b = run(mixture, sampler=sampler, seed=5), run(mixture, sampler=sampler, seed=5)
    assert all(torch.equal(s.x, t.x) for s, t in zip(a, b))
    c = run(mixture, sampler=sampler, seed=6)
    assert not torch.equal(a[-1].x, c[-1].x)


def test_noise_is_per_sample_and_independent_of_batch_size():
    big, small = NoiseSource(3, 8), NoiseSource(3, 3)
    for _ in range(3):                                   # the whole per-step sequence, not only the first draw
        assert torch.equal(big.randn((1, 4, 4))[:3], small.randn((1, 4, 4)))


class RecordingNoise(NoiseSource):
    draws: list = []

    def randn(self, shape):
        out = super().randn(shape)
        type(self).draws.append(out)
        return out


def test_identical_noise_across_methods_and_weights(mixture, mixture_classifier):
    """Same seed: same initial AND per-step noise, whatever the method or w (ancestral sampler)."""
    models = {"classifier": mixture_classifier, "weak_net": mixture.widened(0.5)}
    records = []
    for method, weight in [("unguided", 0), ("cfg", 1.0), ("cfg", 6.0), ("classifier", 2.0), ("gfcg", 2.0),
                           ("autoguidance", 2.0)]:
        RecordingNoise.draws = []
        steps = run(mixture, method, weight, "ancestral", num_steps=10, n=16, noise_cls=RecordingNoise,
                    **models)
        records.append((list(RecordingNoise.draws), steps))
    first_draws, first_steps = records[0]
    assert len(first_draws) == 10                        # initial noise + 9 fresh draws (none at sigma -> 0)
    for draws, steps in records[1:]:
        assert all(torch.equal(a, b) for a, b in zip(draws, first_draws)) and len(draws) == len(first_draws)
        assert torch.equal(steps[0].x, first_steps[0].x)
        assert not torch.equal(steps[-1].x, first_steps[-1].x)      # ... and guidance did change the result


def class_moments(mixture, label, n=200_000):
    y = mixture.sample(n, label, torch.Generator().manual_seed(1))
    return y.mean(0), torch.cov(y.T)


@pytest.mark.parametrize("sampler,num_steps,tol", [("ddim", 200, 0.08), ("ancestral", 200, 0.1)])
def test_unguided_sampling_reproduces_the_class_distribution(mixture, sampler, num_steps, tol):
    x = run(mixture, sampler=sampler, num_steps=num_steps, n=4000, label=1)[-1].x
    mean, cov = class_moments(mixture, 1)
    assert torch.allclose(x.mean(0), mean, atol=tol), (x.mean(0), mean)
    assert torch.allclose(torch.cov(x.T), cov, atol=2 * tol), (torch.cov(x.T), cov)


@pytest.mark.parametrize("method", ["cfg", "classifier", "gfcg", "autoguidance"])
def test_guidance_moves_samples_towards_the_target_class(mixture, mixture_classifier, method):
    models = {"classifier": mixture_classifier, "weak_net": mixture.widened(1.0)}
    p = []
    for weight in (0.0, 2.0, 6.0):
        x = run(mixture, method, weight, num_steps=64, n=2000, label=2, **models)[-1].x
        p.append(mixture_classifier(x, 0.002).exp()[:, 2].mean().item())
    assert p[0] < p[1] < p[2], p


def test_final_drains_the_trajectory(mixture):
    guidance = make_guidance("unguided", 0.0)
    c = torch.zeros(4, dtype=torch.long)
    steps = sample(lambda x, s: guidance(mixture, x.double(), s, c), karras_sigmas(5, 0.002, 80.0),
                   BatchNoise(0, 4), (2,))
    torch.testing.assert_close(final(steps), run(mixture, num_steps=5, n=4)[-1].x)


def test_dpmpp_2m_is_a_second_order_ode_solver(mixture):
    """Both solve the same probability-flow ODE. Doubling the steps halves DDIM's error (first order) and
    quarters DPM-Solver++(2M)'s (second order); at 32 steps it is several times closer to the 4000-step solution."""
    reference = run(mixture, sampler="ddim", num_steps=4000, n=512, label=1)[-1].x
    error = {(s, n): (run(mixture, sampler=s, num_steps=n, n=512, label=1)[-1].x - reference).norm(dim=1).mean()
             for s in ("ddim", "dpmpp_2m") for n in (16, 32)}
    assert 1.7 < error["ddim", 16] / error["ddim", 32] < 2.3, error
    assert error["dpmpp_2m", 16] / error["dpmpp_2m", 32] > 3.5, error
    assert error["dpmpp_2m", 32] < 0.3 * error["ddim", 32], error


def test_trajectory_steps_one_run_as_the_loop_does(mixture):
    """The scheduler's per-run stepping and the plain loop are the same code path."""
    from demo.engine.samplers import Trajectory
    guidance = make_guidance("cfg", 2.0)
    c = torch.full((16,), 2, dtype=torch.long)
    sigmas = karras_sigmas(8, 0.002, 80.0)
    loop = list(sample(lambda x, s: guidance(mixture, x.double(), s, c), sigmas, BatchNoise(4, 16), (2,),
                       "dpmpp_2m"))
    trajectory = Trajectory(sigmas, BatchNoise(4, 16), (2,), "dpmpp_2m")
    steps = []
    while not trajectory.done:
        steps.append(trajectory.advance(guidance(mixture, trajectory.x.double(), trajectory.sigma, c)))
    steps.append(trajectory.final())
    assert all(torch.equal(a.x, b.x) and a.sigma == b.sigma for a, b in zip(loop, steps)) and len(steps) == 9
