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
from demo.serving.scheduler import BACKGROUND, INTERACTIVE, Scheduler

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
    assert all(f.priority()[0] == INTERACTIVE for f in chosen) and sum(f.key.rows for f in chosen) <= 15
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
    with pytest.raises(RequestError, match=r"would cost \d+\.\d\dx a default comparison.*allows 8x.*fewer samples"):
        service.compare(huge)
    with pytest.raises(RequestError, match="sweep would cost"):
        service.sweep_live(replace(huge, num_samples=16, sampler=SamplerConfig(num_steps=100))).run()
    with pytest.raises(RequestError, match="2-D run would cost"):
        toy_lab.ToyLab(budget=8).run_live(toy_lab.parse_toy("three classes, overlapping", 0, 2.0, 1000, 5000, 0)).run()
    assert time.perf_counter() - began < 1 and not service.scheduler.jobs
    from demo.engine.config import PRESETS  # the unit: a comparison at the app's default preset
    default = Request(label=0, weight=1.0, sampler=PRESETS[0].sampler, interval=PRESETS[0].interval)
    assert svc.cost(svc.comparison_requests(default)) == svc.REFERENCE_COST
    service.compare(replace(huge, num_samples=2, sampler=SamplerConfig(num_steps=8)))      # a small one runs
    assert svc.Service(models, budget=1000).budget == 1000


# ---- regression tests of issue 20 §3 (1-3) ---------------------------------------------------------------------

def test_a_key_cancelled_mid_step_and_resubmitted_still_finishes(models, monkeypatch):
    key = replace(BASE, seed=21, sampler=SamplerConfig(num_steps=1))       # finishes in the step it is cancelled in
    scheduler, later = Scheduler(models), []
    first = scheduler.submit([key])
    original = demo.serving.scheduler.step_together

    def stop_then_generate(models, recorders):                  # Stop, then Generate, while the step runs
        if not later:
            first.cancel()
            later.append(scheduler.submit([key]))
        return original(models, recorders)
    monkeypatch.setattr(demo.serving.scheduler, "step_together", stop_then_generate)
    first.wait(0.1)
    (again,) = later
    for _ in range(20):                                         # bounded: before the fix it never finished
        if again.finished:
            break
        again.wait(0.05)
    assert again.finished and again.error is None and key in again.runs
    assert scheduler.steps_run == 1 and not scheduler.jobs          # the finished run was adopted, not resampled


def test_a_fault_in_one_job_fails_only_the_tickets_that_wait_for_it(models, monkeypatch):
    faulty = replace(BASE, seed=13)
    original = demo.serving.scheduler.step_together

    def broken(models, recorders):
        if any(r.request == faulty for r in recorders):
            raise RuntimeError("a broken run")
        return original(models, recorders)
    monkeypatch.setattr(demo.serving.scheduler, "step_together", broken)
    scheduler = Scheduler(models)
    good, bad, both = scheduler.submit([BASE]), scheduler.submit([faulty]), scheduler.submit([BASE, faulty])
    for ticket in (good, bad, both):
        finish(ticket)
    assert good.error is None and BASE in good.runs
    assert isinstance(bad.error, RuntimeError) and isinstance(both.error, RuntimeError) and not scheduler.jobs
    torch.testing.assert_close(good.runs[BASE].samples, alone(models, BASE).samples, rtol=0, atol=2e-3)


def test_a_guide_the_weights_lack_is_refused_before_anything_is_sampled(models, monkeypatch):
    from demo.engine.validation import RequestError
    service = svc.Service(replace(models, guides={}))              # a weights folder with the default guide only
    monkeypatch.setattr(service.scheduler, "step", lambda: pytest.fail("sampled a request it should refuse"))
    base = replace(BASE, guide="mild")
    with pytest.raises(RequestError, match="guide 'mild' is not installed in this weights folder"):
        service.compare(base, ["cfg", "autoguidance"])
    with pytest.raises(RequestError, match="guide 'mild'"):
        service.sweep_live(base, ["autoguidance"], (1.0,), background=True).run()
    assert not service.scheduler.jobs
    monkeypatch.undo()
    assert service.compare(base, ["cfg"]).runs["cfg"].samples.shape == (3, 1, 28, 28)   # cfg reads no guide


def test_a_comparison_after_a_larger_sweep_finishes_in_its_own_steps(models):
    scheduler = Scheduler(models, max_rows=48)
    sweep = scheduler.submit([replace(BASE, method=m, weight=w) for m in ("cfg", "autoguidance")
                              for w in (0.5, 1.0, 2.0, 4.0)])                   # 8 runs x 6 rows: every row
    comparison = scheduler.submit([replace(BASE, seed=5, method="unguided", weight=0.0), replace(BASE, seed=5)])
    finish(comparison)
    assert scheduler.steps_run == BASE.sampler.num_steps and not sweep.finished    # first-come: 2 x num_steps
    finish(sweep)


def test_a_job_that_does_not_fit_is_skipped_not_a_stop():
    from demo.serving.scheduler import Job
    scheduler = Scheduler(None, max_rows=15)
    keys = [replace(BASE, weight=w) for w in (1.0, 2.0, 3.0)] + [replace(BASE, method="unguided", weight=0.0)]
    scheduler.submit(keys)                                           # rows 6, 6, 6 (does not fit), 3
    chosen = scheduler.choose()
    assert [j.key for j in chosen] == [keys[0], keys[1], keys[3]] and all(isinstance(j, Job) for j in chosen)
    big, small = Scheduler(None, max_rows=15), [replace(BASE, seed=40 + k) for k in range(2)]
    big.submit([replace(BASE, weight=w) for w in (0.5, 1.0, 2.0, 4.0)])      # first: 24 rows
    big.submit(small)                                                         # then: 12 rows, served first
    assert {j.key for j in big.choose()} >= set(small)
