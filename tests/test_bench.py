"""The bench's measuring tools (the bench itself, `python -m demo.bench`, is not a test: speed is not asserted)."""
from __future__ import annotations

import torch

from demo.engine import batching
from demo.engine.config import SamplerConfig, UNetConfig
from demo.engine.networks import Denoiser
from demo.engine.pipeline import Request, generate_final
from demo.tools import benchmarks


def test_memory_format_is_restored_after_a_variant():
    net = Denoiser(UNetConfig(channels=(8, 16), emb_dim=16))
    conv = net.encoder.stem.weight
    with benchmarks.memory_format([net], torch.channels_last):
        assert net.encoder.stem.weight.is_contiguous(memory_format=torch.channels_last)
        assert not net.encoder.stem.weight.is_contiguous()
    assert net.encoder.stem.weight.is_contiguous() and conv.shape == net.encoder.stem.weight.shape


def test_network_timer_counts_network_time_and_cleans_up(models):
    original = batching.classify
    request = Request(label=2, method="classifier", weight=2.0, num_samples=2, sampler=SamplerConfig(num_steps=3))
    with benchmarks.network_timer(models) as spent:
        generate_final(models, request)
    assert spent[0] > 0 and batching.classify is original
    assert not models.net._forward_hooks and not models.net._forward_pre_hooks


def test_the_clock_times_network_calls_and_steps_and_leaves_nothing_behind(models):
    """The bench's clock (demo/tools/timing.py) in process: every sampled request is a ticket with its wait and
    sampling, the network calls are a part of the steps, rows are counted per network, and the wrappers go."""
    from demo.engine import networks
    from demo.engine.guidance import METHODS
    from demo.serving import service as svc
    from demo.serving.scheduler import Scheduler
    from demo.tools.timing import Clock, split
    from demo.ui import picture
    originals = (networks.Denoiser.forward, Scheduler.step, batching.classify, picture.comparison_html)
    base = Request(label=3, weight=1.0, num_samples=2, sampler=SamplerConfig(num_steps=3))
    clock = Clock()
    with clock.installed():
        before = clock.snapshot()
        results = svc.Service(models).compare(base, METHODS)
        picture.comparison_html(results.runs)
        after = clock.snapshot()
    assert (networks.Denoiser.forward, Scheduler.step, batching.classify, picture.comparison_html) == originals
    s = split(before, after, wall=10.0, latencies=[10.0])
    assert s["requests_sampled"] == 1 and s["sampling_steps"] == 3 and s["rendering_calls"] == 1
    assert 0 < s["network_seconds"] <= after["step_seconds"] and s["network_fraction"] == s["network_seconds"] / 10
    r = s["per_request"]
    assert r["sampling_seconds"] > 0 and r["waiting_seconds"] >= 0
    assert abs(r["rest_seconds"] - (10 - r["waiting_seconds"] - r["sampling_seconds"] - r["rendering_seconds"])) < 1e-9
    assert clock.rows[(models.net, False)] > 0 and clock.rows[(models.classifier, True)] == 2 * 3   # the gradient


def test_the_flops_by_rows_equal_a_count_of_the_whole_run(models):
    """bench_flops counts rows per network and multiplies by FLOPs per row: the same total as FlopCount over the
    whole run (every network call is per row), served and sampled, with and without the probe."""
    from demo.engine.config import Interval
    from demo.engine.pipeline import generate_together
    from demo.science.flops import FlopCount
    from demo.serving import recording
    from demo.tools import bench_flops
    base = Request(label=5, weight=1.0, num_samples=2, sampler=SamplerConfig(num_steps=3), interval=Interval(0.5, 10))
    keys = bench_flops.comparison_keys(base, {"cfg": 2.0, "classifier": 1.0})
    counted = bench_flops.count(models, keys)
    runs = {"served": lambda: recording.run_methods(models, keys),
            "probe_off": lambda: list(generate_together(models, keys, record=False)),
            "probe_on": lambda: list(generate_together(models, keys, record=True))}
    for name, run in runs.items():
        with FlopCount() as counter:
            run()
        assert counted[name] == counter.total, name
    assert counted["probe_off"] < counted["probe_on"] < counted["served"]
    classic = bench_flops.classic(base)
    assert classic.sampler.num_steps == 32 and classic.sampler.sampler == "ddim" and classic.interval == Interval()
