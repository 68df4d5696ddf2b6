"""The engine API on the shipped models: validation and normalisation of requests, and what a trajectory records."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from demo.engine.batching import classify, target_probability
from demo.engine.config import GUIDES, Interval, SamplerConfig
from demo.engine.pipeline import Request, RequestError, generate, generate_final
from demo.engine.samplers import Prediction, followed
from demo.serving import service as svc


@pytest.mark.parametrize("num_steps", [1, 2, 6])
def test_final_p_target_is_read_at_the_lowest_noise_level(models, num_steps):
    """The final sample has sigma 0; p(c|x) is read at the schedule's sigma_min (never at sigma_max = 80)."""
    request = Request(label=4, method="cfg", weight=2.0, num_samples=3, seed=2,
                      sampler=SamplerConfig(num_steps=num_steps))
    last = list(generate(models, request))[-1]
    with torch.inference_mode():
        probs = classify(models.classifier, last.x, request.sampler.sigma_min, torch.full((3,), 4), False).probs
    torch.testing.assert_close(last.p_target, target_probability(probs, torch.full((3,), 4)))


def test_an_interval_holding_every_noise_level_is_no_interval():
    """The UI's default (0, 80] and the API's default are the same request (same cache entry, same title)."""
    assert Request(label=3, interval=Interval(0.0, 80.0)) == Request(label=3)
    assert Request(label=3, interval=Interval(0.0, math.inf)).interval == Interval()
    assert Request(label=3, interval=Interval(0.0, 79.0)).interval == Interval(0.0, 79.0)
    assert Request(label=3, interval=Interval(0.5, 80.0)).interval == Interval(0.5, 80.0)


def test_whole_numbers_are_converted():
    request = Request(label=3.0, num_samples=4.0, seed=7.0, sampler=SamplerConfig(num_steps=12.0),
                      interval=Interval(1, 5))
    assert request.sampler.num_steps == 12 and type(request.sampler.num_steps) is int
    assert all(type(v) is int for v in (request.label, request.num_samples, request.seed))
    assert type(request.interval.sigma_lo) is float and type(request.interval.sigma_hi) is float


@pytest.mark.parametrize("value,message", [
    ("12", "steps must be a number"), (12.5, "steps must be a whole number"), (None, "steps must be a number")])
def test_bad_step_counts_are_request_errors(value, message):
    with pytest.raises(RequestError, match=message):
        Request(label=3, sampler=SamplerConfig(num_steps=value))


def test_long_values_are_cut_in_messages():
    with pytest.raises(RequestError) as error:
        Request(label="x" * 1_000_000)
    assert len(str(error.value)) < 200


def test_guidance_norm_measures_what_the_clamp_let_through():
    """With the x0 estimate clamped to [-1, 1], guidance that pushes further out changes nothing more."""
    cond = torch.tensor([[0.5, 0.9, -0.2]])
    delta = torch.tensor([[0.3, 5.0, -0.1]])                  # guided: 0.8, 5.9 -> 1.0, -0.3
    denoised, norm = followed(Prediction(cond + delta, delta), clip_denoised=True)
    torch.testing.assert_close(denoised, torch.tensor([[0.8, 1.0, -0.3]]))
    torch.testing.assert_close(norm, torch.tensor([math.hypot(0.3, 0.1, 0.1)]))
    _, raw = followed(Prediction(cond + delta, delta), clip_denoised=False)
    torch.testing.assert_close(raw, delta.norm(dim=1))


def test_a_cached_run_evicted_during_a_request_is_still_returned(models):
    """runs_live holds the cached runs it found: a small cache that evicts them meanwhile changes nothing."""
    service = svc.Service(models, cache_bytes=1)      # holds one run at most
    base = Request(label=1, method="unguided", weight=0.0, num_samples=2, seed=3, sampler=SamplerConfig(num_steps=3))
    service.compare(base, methods=["unguided"])
    others = [replace(base, method="cfg", weight=w) for w in (1.0, 2.0, 3.0)]
    runs, fresh = svc.Live(service.runs_live([base, *others])).run()
    assert all(run is not None for run in runs) and len(fresh) == 1
    assert torch.equal(runs[0].samples, service.compare(base, methods=["unguided"]).runs["unguided"].samples)


def test_guide_is_validated_and_ignored_by_methods_without_one():
    with pytest.raises(RequestError, match="unknown guide 'nope'; choose one of default"):
        Request(label=0, method="autoguidance", guide="nope")
    cfg = Request(label=0, method="cfg", weight=1.0, guide=GUIDES[1].key)
    assert svc.cache_key(cfg) == svc.cache_key(replace(cfg, guide=GUIDES[0].key))         # one cache entry
    ag = replace(cfg, method="autoguidance")
    assert svc.cache_key(ag) != svc.cache_key(replace(ag, guide=GUIDES[0].key))
    assert svc.cache_key(replace(ag, weight=0.0)) == svc.cache_key(replace(cfg, weight=0.0))  # w = 0: unguided


def test_every_offered_guide_is_shipped_and_changes_autoguidance(models):
    assert set(models.guides) == {g.key for g in GUIDES[1:]}
    with pytest.raises(RequestError, match="not installed"):
        replace(models, guides={}).guide(GUIDES[1].key)
    base = Request(label=4, method="autoguidance", weight=2.0, num_samples=2, seed=5,
                   sampler=SamplerConfig(num_steps=6))
    finals = [generate_final(models, replace(base, guide=g.key)) for g in GUIDES]
    for k in range(1, len(finals)):
        assert not torch.allclose(finals[0], finals[k], atol=1e-3)       # each guide is a different D_weak


def test_the_followed_samples_p_c_x_is_read_on_demand_exactly_as_a_probe_would(models):
    """The comparison samples without the p(c|x) probe (work nobody sees); showing a sample's trajectory reads it
    for that sample only, from the recorded states: the same curve as a run that probed every step."""
    import numpy as np

    from demo.serving import recording
    request = Request(label=4, method="cfg", weight=2.0, num_samples=3, seed=8, sampler=SamplerConfig(num_steps=6))
    (run,) = recording.run_methods(models, [request])
    assert np.isnan(run.p_target).all()                             # cfg reads no classifier while sampling
    (column,) = recording.probe(models, [run], 2)
    probed = torch.stack([s.p_target for s in generate(models, request)]).numpy()   # the engine's own probe
    np.testing.assert_allclose(column, probed[:, 2], atol=1e-5)
    assert np.isnan(run.p_target).all()                             # probe() returns it; Service.probe stores it
