"""ZeroGPU (issue 20 §3.6): each spaces.GPU call runs in a forked worker that gets its arguments and returns its
results by pickling, so whatever it caches is lost. The stand-in below forks as the real one does; the cache
must live in the server process."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
import torch

from demo.engine.config import SamplerConfig
from demo.engine.guidance import METHODS
from demo.engine.pipeline import Request, RequestError
from demo.serving import server
from demo.serving import service as svc
from demo.serving.compute import COMPUTE

BASE = Request(label=3, weight=1.0, num_samples=2, seed=123, sampler=SamplerConfig(num_steps=4))


def forking_spaces():
    """A stand-in for Hugging Face's `spaces` on ZeroGPU: each call of a GPU(fn) function forks a worker, sends it
    the pickled arguments, and returns the pickled result (or raises the worker's exception)."""
    spaces = types.ModuleType("spaces")
    spaces.wrapped, spaces.calls = [], []              # decorated names; (name, worker pid) per call
    context = multiprocessing.get_context("fork")

    def worker(fn, inbox, outbox):
        torch.set_num_threads(1)                        # the parent's OpenMP team does not survive a fork
        args, kwargs = pickle.loads(inbox.recv_bytes())
        try:
            outbox.send_bytes(pickle.dumps(("ok", fn(*args, **kwargs), os.getpid())))
        except Exception as error:
            outbox.send_bytes(pickle.dumps(("error", error, os.getpid())))

    def GPU(fn):                                        # noqa: N802 (spaces' name)
        spaces.wrapped.append(fn.__name__)

        def decorated(*args, **kwargs):
            (inbox, to_worker), (from_worker, outbox) = context.Pipe(False), context.Pipe(False)
            process = context.Process(target=worker, args=(fn, inbox, outbox), daemon=True)
            process.start()
            to_worker.send_bytes(pickle.dumps((args, kwargs)))            # plain pickles: copies, no sharing
            kind, value, pid = pickle.loads(from_worker.recv_bytes())
            process.join(30)
            spaces.calls.append((fn.__name__, pid))
            if kind == "error":
                raise value
            return value
        return decorated
    spaces.GPU = GPU
    return spaces


@pytest.fixture()
def zerogpu(monkeypatch):
    spaces = forking_spaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.setattr(COMPUTE, "device_call", None)                      # restored afterwards
    monkeypatch.setattr(COMPUTE, "decorated", {})
    server.use_zerogpu(server.zerogpu({"SPACE_ID": "o/n", "SPACES_ZERO_GPU": "true"}))
    return spaces


def test_on_zerogpu_the_cache_lives_in_the_server_process(models, zerogpu):
    service = svc.Service(models)
    assert zerogpu.wrapped == ["sample_batch", "probe_batch"]    # decorated once, when made (before launch)
    here = []                                                    # denoiser calls in this (the server) process
    hook = models.net.register_forward_pre_hook(lambda *_: here.append(os.getpid()))
    try:
        first = service.compare(BASE, METHODS)
        assert len(zerogpu.calls) == 1 and zerogpu.calls[0][1] != os.getpid()        # sampled in a fork
        assert service.compare(BASE, METHODS).runs == first.runs and len(zerogpu.calls) == 1   # the same again
        trajectory = service.compare_live(BASE, METHODS).run()  # what the trajectory handler asks next
        assert trajectory.runs == first.runs and trajectory.fresh_batches == frozenset()
        assert len(zerogpu.calls) == 1
        service.probe(list(trajectory.runs.values()), 1)        # the followed sample's p(c|x): one device call
        assert len(zerogpu.calls) == 2 and all(not np.isnan(r.p_target[:, 1]).any() for r in trajectory.runs.values())
        ladder = service.sweep_live(BASE, METHODS[1:], (0.5, 2.0), background=True, visitor="v").run()
        assert len(zerogpu.calls) == 3 and len(ladder.runs) == 10
        moved = service.compare(BASE, METHODS, {m: 2.0 for m in METHODS[1:]})       # w moved along the ladder
        assert len(zerogpu.calls) == 3 and moved.fresh_batches == frozenset()
        with pytest.raises(RequestError, match="guide 'mild' is not installed"):   # refused before any GPU call
            svc.Service(replace(models, guides={})).compare(replace(BASE, guide="mild"), ["autoguidance"])
        assert len(zerogpu.calls) == 3
    finally:
        hook.remove()
    assert not here                                              # no network ran in the server process
    # the same runs sampled here: equal up to float rounding (the stand-in's worker runs torch on 1 thread, this
    # process on 2, and a convolution's sums may round differently with the thread count at small batches)
    here_runs = svc.run_methods(models, [replace(BASE, method=m) for m in METHODS])
    for method, run in zip(METHODS, here_runs):
        torch.testing.assert_close(first.runs[method].samples, run.samples, rtol=0, atol=1e-5)


def test_on_zerogpu_admission_applies_before_the_gpu_is_asked(models, zerogpu):
    service = svc.Service(models, budget=1.0, max_in_flight=1)
    with pytest.raises(RequestError, match="would cost"):
        service.compare(replace(BASE, num_samples=64, sampler=SamplerConfig(num_steps=100)), METHODS)
    live = iter(service.compare_live(replace(BASE, seed=5), ["cfg"]))
    next(live)                                                   # admitted; the GPU call comes next
    with pytest.raises(RequestError, match="The class is full: 1 comparisons"):
        service.compare(replace(BASE, seed=6), ["cfg"])
    for _ in live:
        pass
    assert zerogpu.calls == [("sample_batch", zerogpu.calls[0][1])] and service.sampling == 0
