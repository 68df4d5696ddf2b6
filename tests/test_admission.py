"""What may be sampled, and when: the class limit (max_in_flight), the budget of background work (the w ladder)
counted per visitor, and the digits of a refusal (issue 24 §2, §3, §4)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from demo.engine.config import SamplerConfig
from demo.engine.pipeline import Request, RequestError
from demo.serving import service as svc

BASE = Request(label=3, method="cfg", weight=2.0, num_samples=3, seed=0, sampler=SamplerConfig(num_steps=6))
UNIT = svc.cost([BASE]) / svc.REFERENCE_COST          # what one run of BASE costs, in default comparisons


def test_at_most_max_in_flight_comparisons_sample_and_the_next_is_told_at_once(models):
    service = svc.Service(models, max_in_flight=2)
    cached = replace(BASE, seed=9)
    service.compare(cached, ["cfg"])
    first, second = (iter(service.compare_live(replace(BASE, seed=s), ["cfg"])) for s in (1, 2))
    next(first), next(second)                                     # both sampling
    assert service.sampling == 2
    with pytest.raises(RequestError, match=r"^The class is full: 2 comparisons are being sampled right now; "
                                           r"please press Generate again in a few seconds\.$"):
        service.compare(replace(BASE, seed=3), ["cfg"])
    assert replace(BASE, seed=3) not in service.scheduler.jobs    # refused before it was submitted
    assert service.compare(cached, ["cfg"]).fresh_batches == frozenset()   # from the cache: never counted
    first.close()                                                 # Stop: its place is free at once
    assert service.sampling == 1
    assert service.compare(replace(BASE, seed=3), ["cfg"]).runs["cfg"].samples.shape == (3, 1, 28, 28)
    for _ in second:
        pass
    assert service.sampling == 0
    assert svc.Service(models).max_in_flight is None              # no limit unless the server sets one


def test_a_ladder_over_the_budget_is_refused_before_anything_is_sampled(models, monkeypatch):
    service = svc.Service(models, budget=1.0)
    monkeypatch.setattr(service.scheduler, "step", lambda: pytest.fail("sampled a ladder it should refuse"))
    huge = replace(BASE, num_samples=64, sampler=SamplerConfig(num_steps=100))     # one run: many defaults
    times = svc.shown_times(svc.cost([replace(huge, method="cfg")]) / svc.REFERENCE_COST)   # rounded up
    with pytest.raises(RequestError, match=rf"This w ladder would cost {times} a default comparison; this "
                                           r"server allows 1x per request"):
        service.sweep_live(huge, ["cfg"], (1.0, 2.0), background=True, visitor="a").run()
    assert not service.scheduler.jobs and not service.background


def test_a_ladder_samples_in_slices_within_the_budget_counted_per_visitor(models):
    service = svc.Service(models, budget=2.5 * UNIT, max_in_flight=2)            # two runs of BASE at once
    held = []
    original = service.admitted

    def spy(keys, background, visitor):
        held.append((len(keys), background, visitor))
        return original(keys, background, visitor)
    service.admitted = spy
    weights = (1.0, 2.0, 3.0, 4.0, 5.0)
    ladder = iter(service.sweep_live(BASE, ["cfg"], weights, background=True, visitor="a"))
    next(ladder)
    assert 0 < service.background["a"] <= service.budget
    with pytest.raises(RequestError, match=r"would bring your background work to \d+\.\d\dx .* per visitor at once"):
        service.sweep_live(replace(BASE, seed=8), ["cfg"], (1.0, 2.0), background=True, visitor="a").run()
    other = iter(service.sweep_live(replace(BASE, seed=8), ["cfg"], (1.0,), background=True, visitor="b"))
    next(other)                                                                 # another visitor's: admitted
    with pytest.raises(RequestError, match="The server is busy: 2 w ladders"):
        service.sweep_live(replace(BASE, seed=8), ["cfg"], (2.0,), background=True, visitor="c").run()
    for _ in [*ladder, *other]:
        pass
    assert held[0] == (2, True, "a") and [n for n, _, v in held if v == "a"][-3:] == [2, 2, 1]
    assert not service.background                                               # every slice released
    runs = service.sweep_live(BASE, ["cfg"], weights, background=True, visitor="a").run().runs
    assert sorted(runs) == [("cfg", w) for w in weights] and len(held) == 6     # all cached: nothing admitted


def test_a_refusal_shows_enough_digits_to_see_the_excess():
    assert svc.shown_times(8.03) == "8.03x" and svc.shown_times(8.001) == "8.01x" and svc.shown_times(8.0) == "8.00x"


def test_ladders_of_unnamed_visitors_are_each_their_own_account(models):
    service = svc.Service(models, budget=2.5 * UNIT)
    ladders = [iter(service.sweep_live(replace(BASE, seed=s), ["cfg"], (1.0, 2.0), background=True)) for s in (4, 5)]
    for ladder in ladders:
        next(ladder)
    assert len(service.background) == 2 and all(0 < held <= service.budget for held in service.background.values())
    for ladder in ladders:
        for _ in ladder:
            pass
    assert not service.background
