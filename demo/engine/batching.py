"""Network calls of many guided evaluations, in one batch per network.

Every evaluation has the same two rounds: first every classifier (the method's own, or the p(c|x) probe the
trajectory records), then every denoiser. `evaluate_together` runs any number of evaluations in lockstep and,
each round, calls every network ONCE on the concatenation of all rows asked of it (a comparison of the six
methods at 8 samples: one denoiser call of 64 rows and one weak-network call of 16 rows per step instead of
many small ones). The rows may sit at different noise levels: the networks take one sigma per row. The neutral
setting (w = 0) and the guidance interval (Kynkaanniemi et al. 2024: guide only for sigma_lo < sigma <=
sigma_hi) are handled once, here, and skip the extra evaluations. The method classes (guidance.py) never see
this machinery: they say which calls they need (`requests`) and how to combine the outputs (`combine`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from demo.engine.samplers import Prediction

if TYPE_CHECKING:
    from demo.engine.guidance import Guidance


class Call(NamedTuple):
    """A denoiser evaluation a method asks for: model(x, sigma, label)."""
    model: Callable
    x: Tensor
    label: Tensor


class Given:
    """The "model" of a Call whose output is already known (computed earlier in the step): returns it as is."""

    def __init__(self, output: Tensor):
        self.output = output

    def __call__(self, x: Tensor, sigma: float | Tensor, label: Tensor) -> Tensor:
        assert len(x) == len(self.output), "a Given output answers exactly the Call it was made for"
        return self.output


class Belief(NamedTuple):
    """What a noisy classifier says about x: p(k | x, sigma) (B, K) and, if asked, grad_x log p(label | x, sigma)."""
    probs: Tensor
    grad: Tensor | None = None


def target_probability(probs: Tensor, label: Tensor) -> Tensor:
    """p(label | x) per row from class probabilities (B, K): (B,)."""
    return probs.gather(1, label[:, None])[:, 0]


def classify(model: Callable, x: Tensor, sigma: float | Tensor, label: Tensor, grad: bool) -> Belief:
    """p(. | x, sigma) from a classifier `model(x, sigma) -> logits`; `grad` adds grad_x log p(label | x, sigma)."""
    if not grad:
        return Belief(model(x, sigma).softmax(dim=1))
    with torch.inference_mode(False), torch.enable_grad():     # the sampler runs in inference mode
        x_in = x.clone().requires_grad_(True)                   # normal tensors that autograd may track
        logits = model(x_in, sigma)
        log_p = target_probability(logits.log_softmax(dim=1), label.clone())
        (g,) = torch.autograd.grad(log_p.sum(), x_in)          # rows are independent: one backward for all
    return Belief(logits.detach().softmax(dim=1), g)


class Evaluation(NamedTuple):
    """One guided evaluation of a lockstep round; `probe`, a classifier, records p(label | x) for trajectories."""
    guidance: Guidance
    net: Callable
    x: Tensor
    sigma: float
    label: Tensor
    probe: Callable | None = None


def _sigma_rows(sigmas: list[float], sizes: list[int], like: Tensor) -> float | Tensor:
    """One noise level for a concatenated batch: the shared float, or a per-row tensor if they differ."""
    if all(s == sigmas[0] for s in sigmas):
        return sigmas[0]
    return torch.cat([torch.full((n,), s, dtype=like.dtype, device=like.device) for s, n in zip(sigmas, sizes)])


def _same_as_earlier(asks: list[tuple[Any, Tensor, float, Tensor]], ks: list[int]) -> dict[int, int]:
    """{k: j}: request k of this group asks exactly what the earlier request j asks (the same x, sigma and
    labels). The methods of a comparison start from the same noise and stay bit-identical until guidance first
    acts on them (w = 0, or outside the guidance interval: the fast preset's first three steps), so there six
    identical denoiser calls are one. Found by content: a cheap fingerprint (the rows' sums), confirmed by an
    exact comparison. CPU only: on a GPU the duplicate rows cost less than the host sync that would find them."""
    if len(ks) < 2 or asks[ks[0]][1].device.type != "cpu":
        return {}
    seen: dict[tuple, list[int]] = {}
    same = {}
    for k in ks:
        _, x, sigma, label = asks[k]
        fingerprint = (float(sigma), tuple(x.shape), tuple(label.tolist()),
                       tuple(x.reshape(len(x), -1).sum(1).tolist()))
        for j in seen.get(fingerprint, ()):
            if torch.equal(asks[j][1], x):
                same[k] = j
                break
        else:
            seen.setdefault(fingerprint, []).append(k)
    return same


def _batched(asks: list[tuple[Any, Tensor, float, Tensor]], key: Callable, run: Callable) -> list[tuple]:
    """Answer (what, x, sigma, label) requests, calling `run(what, x, sigma, label) -> tuple of (B, ...)
    tensors` once per `key(what)` on the concatenation of its rows; returns each request's slice of the outputs.
    A request identical to an earlier one of its group is not computed again: it gets a copy of that answer."""
    groups: dict[Any, list[int]] = {}
    for k, (what, *_) in enumerate(asks):
        groups.setdefault(key(what), []).append(k)
    answers: list[Any] = [None] * len(asks)
    for ks in groups.values():
        same = _same_as_earlier(asks, ks)
        ks = [k for k in ks if k not in same]
        _answer(asks, ks, run, answers)
        for k, j in same.items():
            answers[k] = tuple(None if out is None else out.clone() for out in answers[j])
    return answers


def _answer(asks: list[tuple[Any, Tensor, float, Tensor]], ks: list[int], run: Callable, answers: list) -> None:
    """One network call on the rows of requests `ks` (one group); each request's slice into `answers`."""
    parts = [asks[k] for k in ks]
    sizes = [len(x) for _, x, _, _ in parts]
    x = parts[0][1] if len(parts) == 1 else torch.cat([p[1] for p in parts])
    label = parts[0][3] if len(parts) == 1 else torch.cat([p[3] for p in parts])
    outputs = run(parts[0][0], x, _sigma_rows([p[2] for p in parts], sizes, x), label)
    pieces = [out.split(sizes) if out is not None else [None] * len(sizes) for out in outputs]
    for j, k in enumerate(ks):
        answers[k] = tuple(piece[j] for piece in pieces)


def evaluate_together(evaluations: Sequence[Evaluation]) -> list[Prediction]:
    """Guided predictions of several evaluations: all classifier calls in one batch per (classifier, gradient),
    then all denoiser calls in one batch per network. Evaluations may sit at different noise levels."""
    active = [e.guidance.active(e.sigma) for e in evaluations]
    asks = []                                            # round 1: the method's classifier, or the probe
    for k, (e, on) in enumerate(zip(evaluations, active)):
        model = (e.guidance.classifier_used() if on else None) or e.probe
        if model is not None:
            asks.append(((model, on and e.guidance.classifier_grad), e.x, e.sigma, e.label, k))
    answers = _batched([ask[:4] for ask in asks], lambda what: (id(what[0]), what[1]),
                       lambda what, x, sigma, label: classify(what[0], x, sigma, label, what[1]))
    beliefs: list[Belief | None] = [None] * len(evaluations)
    for ask, answer in zip(asks, answers):
        beliefs[ask[4]] = Belief(*answer)
    calls = [e.guidance.requests(e.net, e.x, e.sigma, e.label, belief) if on else [Call(e.net, e.x, e.label)]
             for e, on, belief in zip(evaluations, active, beliefs)]      # round 2: every denoiser
    flat = [(call.model, call.x, e.sigma, call.label) for e, cs in zip(evaluations, calls) for call in cs]
    outputs = iter(out for (out,) in _batched(flat, id, lambda model, x, sigma, label: (model(x, sigma, label),)))
    predictions = []
    for e, on, belief, cs in zip(evaluations, active, beliefs, calls):
        outs = [next(outputs) for _ in cs]
        p_target = None if belief is None else target_probability(belief.probs, e.label)
        if not on:
            predictions.append(Prediction(outs[0], torch.zeros_like(outs[0]), p_target))
            continue
        denoised, direction = e.guidance.combine(outs, e.x, e.sigma, e.label, belief)
        delta = e.guidance.weight * direction
        predictions.append(Prediction(denoised + delta, delta, p_target))
    return predictions
