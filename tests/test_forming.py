"""The forming picture (issue 22 §1): while a comparison samples, its tiles show each sample's current estimate,
paced, with the place in line before it starts; nothing is sampled for it."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from demo.engine.guidance import METHODS
from demo.serving import service as svc
from demo.ui import compare_tab, form, forming
from demo.ui.common import Runtime

SETTINGS = dict(label=4, mode="same", weight=2.0, guide="default", num_steps=12, sampler="ddim", num_samples=3,
                sigma_lo=0.0, sigma_hi=80.0, follow=0)


@pytest.fixture()
def service(models):
    before = Runtime.service, Runtime.previews
    Runtime.service, Runtime.previews = svc.Service(models), True
    yield Runtime.service
    Runtime.service, Runtime.previews = before


def calls_of(net) -> list:
    counted = []
    handle = net.register_forward_hook(lambda *_: counted.append(1))
    return counted, handle


def test_a_comparison_forms_step_by_step_and_costs_no_extra_network_call(service, models, monkeypatch):
    monkeypatch.setattr(forming, "PREVIEW_EVERY", 0.0)          # a picture at every new step
    monkeypatch.setattr(forming, "PREVIEWS_PER_SECOND", float("inf"))
    counted, handle = calls_of(models.net)
    try:
        shown = [out for out in compare_tab.on_compare(**SETTINGS, seed=101)]
        with_previews = len(counted)
        Runtime.previews = False
        counted.clear()
        plain = [out for out in compare_tab.on_compare(**SETTINGS, seed=102)]
        without = len(counted)
    finally:
        handle.remove()
    pictures = [out[0] for out in shown if isinstance(out[0], str)]
    formed = [p for p in pictures if 'data-forming="true"' in p]
    assert len(formed) >= 3, len(formed)
    reached = [sorted({int(s) for s in re.findall(r"step (\d+)/12", p)}) for p in formed]
    assert reached[0] != reached[-1] and max(reached[-1]) > min(reached[0]), reached   # the steps advance
    assert len(set(formed)) == len(formed)                     # a picture only when something changed
    assert all(p.count('class="gl-cell gl-forming"') == len(METHODS) * 3 for p in formed)
    assert "data-key" in pictures[-1] and 'data-forming' not in pictures[-1]           # the final picture last
    assert not any(isinstance(out[0], str) and "data-forming" in out[0] for out in plain)
    assert with_previews == without                            # the same network calls with previews as without


class FakeLive:
    """A run that waits in line behind `queue` (one value per iteration), then advances one step at a time."""

    def __init__(self, base, weights, queue: list[int], steps: int):
        self.queue, self.steps, self.state = queue, steps, {}
        keys = [svc.cache_key(r) for r in svc.comparison_requests(base, METHODS, weights)]
        self.watch = SimpleNamespace(ahead=lambda: self.queue[0] if self.queue else 0,
                                     previews=lambda: dict(self.state))
        self.keys = keys

    def __iter__(self):
        while self.queue:
            yield 0, self.steps
            self.queue.pop(0)
        for index in range(self.steps):
            x = torch.full((2, 1, 28, 28), index / self.steps)
            step = SimpleNamespace(index=index, sigma=10.0 / (index + 1), x=x, denoised=x)
            self.state = {key: step for key in self.keys}
            yield index, self.steps
            yield index, self.steps                                   # nothing new: no picture for this one


def test_a_request_in_line_says_how_many_are_ahead_once_per_change(monkeypatch):
    monkeypatch.setattr(forming, "PREVIEW_EVERY", 0.0)
    monkeypatch.setattr(forming, "PREVIEWS_PER_SECOND", float("inf"))
    monkeypatch.setattr(Runtime, "previews", True)
    v = form.COMPARE.check({**SETTINGS, "seed": 1, "num_samples": 2})
    base, weights = form.comparison(v)
    live = FakeLive(base, weights, queue=[3, 3, 3, 2, 2, 1], steps=4)
    out = list(forming.forming(live, SimpleNamespace(cached=lambda key: None), base, weights, "x0"))
    lines = [o[2] for o in out]
    assert lines[:3] == ["Waiting in line: 3 comparisons ahead of yours",
                         "Waiting in line: 2 comparisons ahead of yours",
                         "Waiting in line: 1 comparison ahead of yours"]
    pictures = [o[0] for o in out[3:]]
    assert len(pictures) == 4 and all('data-forming="true"' in p for p in pictures)    # one per new step
    assert [re.search(r"step (\d+)/12", p).group(1) for p in pictures] == ["1", "2", "3", "4"]
    assert forming.Pace.forming == 0                           # the visitor left the count


def test_many_forming_comparisons_share_a_bounded_rate_of_pictures():
    assert forming.Pace.every() == forming.PREVIEW_EVERY        # alone: at least twice a second
    paces = [forming.Pace().__enter__() for _ in range(40)]
    try:
        assert forming.Pace.every() == pytest.approx(40 / forming.PREVIEWS_PER_SECOND)
        assert 40 / forming.Pace.every() <= forming.PREVIEWS_PER_SECOND + 1e-9
    finally:
        for pace in paces:
            pace.__exit__()
    assert forming.Pace.every() == forming.PREVIEW_EVERY
