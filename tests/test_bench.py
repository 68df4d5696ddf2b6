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
