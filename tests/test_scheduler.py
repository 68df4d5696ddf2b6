"""The scheduler: everyone's runs batched per step, joining and leaving at any step, results as if alone."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch

import demo.serving.scheduler
from demo.engine.config import SamplerConfig
from demo.engine.pipeline import Request
from demo.serving import service as svc
from demo.serving.scheduler import BACKGROUND, INTERACTIVE, Scheduler, rows

BASE = Request(label=3, method="cfg", weight=2.0, num_samples=3, seed=0, sampler=SamplerConfig(num_steps=6))


def alone(models, request):
    (run,) = svc.run_methods(models, [request])
    return run


def finish(ticket):
    while not ticket.finished:
        ticket.wait(0.1)
    return ticket


def test_concurrent_comparisons_are_batched_and_each_matches_its_run_alone(models):
    service = svc.Service(models)
    bases = [replace(BASE, label=k, seed=10 + k) for k in range(6)]
    start, results = threading.Barrier(len(bases)), {}

    def visitor(base):
        start.wait()
        results[base] = service.compare(base, ["unguided", "cfg", "autoguidance"])
    threads = [threading.Thread(target=visitor, args=(b,)) for b in bases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps_alone = len(bases) * (BASE.sampler.num_steps + 1)
    assert service.scheduler.steps_run < steps_alone / 2       # batched across visitors, not one after another
    for base, result in results.items():
        for method, run in result.runs.items():
            reference = alone(models, replace(base, method=method, weight=0.0 if method == "unguided" else 2.0))
            torch.testing.assert_close(run.samples, reference.samples, rtol=0, atol=2e-3)


def test_a_run_joins_a_batch_under_way_at_another_noise_level(models, monkeypatch):
    batches = []
    original = demo.serving.scheduler.step_together

    def spy(models, recorders):
        batches.append({r.request.seed: r.run.trajectory.sigma for r in recorders})
        return original(models, recorders)
    monkeypatch.setattr(demo.serving.scheduler, "step_together", spy)
    scheduler = Scheduler(models)
    first = scheduler.submit([BASE])
    for _ in range(3):
        first.wait(0.1)
    second = scheduler.submit([replace(BASE, seed=7)])
    finish(first), finish(second)
    mixed = [b for b in batches if len(b) == 2]
    assert mixed and mixed[0][0] != mixed[0][7]                  # one batch, two noise levels
    torch.testing.assert_close(second.runs[replace(BASE, seed=7)].samples,
                               alone(models, replace(BASE, seed=7)).samples, rtol=0, atol=2e-3)


def test_identical_requests_share_one_run_and_cancelling_one_keeps_the_other(models):
    stored = []
    scheduler = Scheduler(models, on_finished=lambda key, run: stored.append(key))
    a, b = scheduler.submit([BASE]), scheduler.submit([BASE])
    a.wait(0.1)
    a.cancel()
    finish(b)
    assert a.finished and not a.runs and stored == [BASE] and BASE in b.runs
    lonely = scheduler.submit([replace(BASE, seed=99)])
    lonely.wait(0.1)
    lonely.cancel()
    assert not scheduler.jobs                                 # nobody waits for it: dropped
    assert scheduler.progress(lonely)[0] == 0


def test_interactive_work_goes_first_and_a_step_stays_within_the_row_cap(models):
    scheduler = Scheduler(models, max_rows=15)
    ladder = [replace(BASE, weight=w) for w in (0.5, 1.0, 1.5, 2.5)]
    scheduler.submit(ladder, background=True)
    assert [f.key for f in scheduler.choose()] == ladder[:2]       # 2 x 3 samples x 2 evaluations <= 15
    visitor = scheduler.submit([replace(BASE, seed=s) for s in range(5)])
    chosen = scheduler.choose()
    assert all(f.priority()[0] == INTERACTIVE for f in chosen) and sum(rows(f.key) for f in chosen) <= 15
    assert len(chosen) == 2 and visitor.priority == INTERACTIVE != BACKGROUND
    huge = Scheduler(models, max_rows=4)
    huge.submit([BASE])
    assert len(huge.choose()) == 1                               # a run larger than the cap still runs


def test_a_fault_reaches_every_waiter_and_the_scheduler_goes_on(models, monkeypatch):
    def broken(models, recorders):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(demo.serving.scheduler, "step_together", broken)
    service = svc.Service(models)
    with pytest.raises(RuntimeError, match="out of memory"):
        service.compare(BASE, ["cfg"])
    monkeypatch.undo()
    assert service.compare(BASE, ["cfg"]).runs["cfg"].samples.shape == (3, 1, 28, 28)


def test_a_request_over_the_budget_is_refused_at_once_with_what_to_reduce(models):
    import time

    from demo.engine.validation import RequestError
    from demo.toy import lab as toy_lab
    service = svc.Service(models, budget=8)
    huge = Request(label=3, num_samples=64, sampler=SamplerConfig(num_steps=1000))
    began = time.perf_counter()
    with pytest.raises(RequestError, match=r"would cost \d+\.\dx a default comparison.*allows 8x.*fewer samples"):
        service.compare(huge)
    with pytest.raises(RequestError, match="sweep would cost"):
        service.sweep_live(replace(huge, num_samples=16, sampler=SamplerConfig(num_steps=100))).run()
    with pytest.raises(RequestError, match="2-D run would cost"):
        toy_lab.ToyLab(budget=8).run_live(toy_lab.parse_toy("three classes, overlapping", 0, 2.0, 1000, 5000, 0)).run()
    assert time.perf_counter() - began < 1 and not service.scheduler.jobs
    assert svc.cost(svc.comparison_requests(Request(label=0, weight=1.0))) == svc.REFERENCE_COST
    service.compare(replace(huge, num_samples=2, sampler=SamplerConfig(num_steps=8)))      # a small one runs
    assert svc.Service(models, budget=1000).budget == 1000
