"""Guidance: one small object that turns the conditional denoiser into a guided one.

The convention, for every method:

    D_w(x; sigma, c) = D(x; sigma, c) + w * Delta(x; sigma, c),      w >= 0,   w = 0  <=>  unguided

with D the class-conditional denoiser (x0 estimate) and Delta the method's direction:

    classifier-free (Ho & Salimans 2022)      Delta = D(x|c) - D(x|null)       eps form: (1+w) eps_c - w eps_null
    autoguidance (Karras et al. 2024)         Delta = D(x|c) - D_weak(x|c)     = D_weak + (1+w)(D - D_weak)
    classifier (Dhariwal & Nichol 2021)       Delta = sigma^2 grad_x log p(c|x, sigma)
                                                                               eps form: eps - w sigma grad log p
    gradient-free classifier (Shenoy et al.)  Delta = a * (D(x|c) - D(x|c_ref)),  c_ref, a from a classifier

Mapping to other code bases: EDM2's `guidance` = 1 + w; diffusers' / k-diffusion's CFG scale = 1 + w;
guided-diffusion's `classifier_scale` = w. Since D = x - sigma * eps and score = (D - x) / sigma^2 (Tweedie),
CFG at weight w samples the score of p(x|c)^(1+w) / p(x)^w, and classifier guidance with the exact classifier
gives exactly the same D_w (tests/test_guidance.py checks both on an analytic Gaussian mixture).

GFCG rule implemented here (our reading of Shenoy et al. 2024, arXiv 2411.15393, whose code is not public):
the noisy classifier, in inference mode (no gradient), reads the current x at the current sigma;
p = softmax(logits(x, sigma)); c_ref = argmax_{k != c} p_k (the class the sample is most confused with);
a = 1 - p_c (the confusion: ~1 while the sample is ambiguous, -> 0 once it is clearly class c).
D(x|c) and D(x|c_ref) are evaluated in one batched forward pass, so GFCG costs as much as CFG plus one
classifier forward.

How a method is written: `direction` is a generator that *asks* for network evaluations instead of calling
the networks, `cond, uncond = yield [Denoise(net, x, c), Denoise(net, x, null)]`, and returns (D(x|c), Delta).
`Guidance.evaluate` wraps it in the same two rounds for every method: first the classifier (the method's own
or the p(c|x) probe the trajectory records), then the denoisers. `evaluate_together` drives any number of
such evaluations in lockstep and, each round, calls every network ONCE on the concatenation of everything
asked of it: one method's cond + null pair, or all five methods of a comparison (40 + 16 rows of the same
denoiser in one forward instead of five small ones). Adding a method is one `direction` of a few lines.

The neutral setting (w = 0) and the guidance interval (Kynkaanniemi et al. 2024: guide only for
sigma_lo < sigma <= sigma_hi) are handled once, in `Guidance.evaluate`, and skip the extra evaluations.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from .config import NULL_LABEL, Interval


class Prediction(NamedTuple):
    denoised: Tensor      # guided x0 estimate D_w
    delta: Tensor         # what guidance added: D_w - D(x|c) = w * Delta (zeros when off)
    p_target: Tensor | None = None   # p(c | x, sigma) if the method or the probe computed it, else None

    @staticmethod
    def cat(predictions: Sequence[Prediction]) -> Prediction:
        """Concatenate along the batch (p_target only if every part has it)."""
        p = [pred.p_target for pred in predictions]
        return Prediction(torch.cat([pred.denoised for pred in predictions]),
                          torch.cat([pred.delta for pred in predictions]),
                          None if any(t is None for t in p) else torch.cat(p))


class Belief(NamedTuple):
    """What a noisy classifier says about x: p(k | x, sigma) (B, K) and, if asked, grad_x log p(label | x, sigma)."""
    probs: Tensor
    grad: Tensor | None = None


class Denoise(NamedTuple):
    """A request for D(x | label) from a denoiser `model(x, sigma, label)`."""
    model: Callable
    x: Tensor
    label: Tensor

    @staticmethod
    def run(model, x: Tensor, sigma: float, label: Tensor, grad: bool) -> tuple[Tensor, ...]:
        return (model(x, sigma, label),)


class Classify(NamedTuple):
    """A request for p(. | x, sigma) from a classifier `model(x, sigma) -> logits`; `grad` adds
    grad_x log p(label | x, sigma) (one backward pass)."""
    model: Callable
    x: Tensor
    label: Tensor
    grad: bool = False

    @staticmethod
    def run(model, x: Tensor, sigma: float, label: Tensor, grad: bool) -> tuple[Tensor, ...]:
        if not grad:
            return (model(x, sigma).softmax(dim=1),)
        with torch.inference_mode(False), torch.enable_grad():     # the sampler runs in inference mode
            x_in = x.clone().requires_grad_(True)                   # normal tensors that autograd may track
            logits = model(x_in, sigma)
            log_p = logits.log_softmax(dim=1).gather(1, label.clone()[:, None])[:, 0]
            (g,) = torch.autograd.grad(log_p.sum(), x_in)     # rows are independent: one backward for all
        return logits.detach().softmax(dim=1), g


def run_calls(calls: Sequence[Denoise | Classify], sigma: float) -> list[Tensor | Belief]:
    """Answer every request, calling each (network, kind) once on the concatenation of its inputs."""
    groups: dict[tuple, list[int]] = {}
    for k, call in enumerate(calls):
        groups.setdefault((type(call), id(call.model), getattr(call, "grad", False)), []).append(k)
    answers: list[Any] = [None] * len(calls)
    for (kind, _, grad), ks in groups.items():
        parts = [calls[k] for k in ks]
        if len(parts) == 1:
            x, label = parts[0].x, parts[0].label
        else:
            x, label = torch.cat([p.x for p in parts]), torch.cat([p.label for p in parts])
        outputs = kind.run(parts[0].model, x, sigma, label, grad)
        sizes = [len(p.x) for p in parts]
        pieces = [out.split(sizes) for out in outputs]
        for j, k in enumerate(ks):
            answers[k] = pieces[0][j] if kind is Denoise else Belief(*(piece[j] for piece in pieces))
    return answers


Evaluation = Generator[list[Denoise | Classify], list[Any], Prediction]


def evaluate_together(evaluations: Sequence[Evaluation], sigma: float) -> list[Prediction]:
    """Drive guided evaluations in lockstep: each round, one call per network on everything asked of it."""
    results: list[Any] = [None] * len(evaluations)
    pending = {i: next(ev) for i, ev in enumerate(evaluations)}
    while pending:
        flat = [(i, call) for i, calls in pending.items() for call in calls]
        answers: dict[int, list] = {i: [] for i in pending}
        for (i, _), answer in zip(flat, run_calls([call for _, call in flat], sigma)):
            answers[i].append(answer)
        asked = {}
        for i, ans in answers.items():
            try:
                asked[i] = evaluations[i].send(ans)
            except StopIteration as done:
                results[i] = done.value
        pending = asked
    return results


@dataclass(frozen=True)
class Guidance:
    """Unguided conditional sampling; the base of every method: D + weight * direction in the interval."""
    weight: float = 0.0
    interval: Interval = Interval()
    requires: ClassVar[tuple[str, ...]] = ()       # models a method needs, by Models field name
    classifier_grad: ClassVar[bool] = False        # whether the method needs grad_x log p(c|x) (not just p)

    def active(self, sigma: float) -> bool:
        """Whether guidance is applied (and its extra evaluations paid) at this noise level."""
        return self.weight != 0 and self.interval.contains(sigma)

    def evaluate(self, net, x: Tensor, sigma: float, label: Tensor, probe=None) -> Evaluation:
        """D_w as two rounds of requests, the same for every method (so methods evaluated together stay
        aligned): the classifier, if the method needs it or a `probe` classifier should record p(c|x); then
        the denoiser(s). Returns the Prediction."""
        active = self.active(sigma)
        classifier = getattr(self, "classifier", None) if active else None
        classifier = probe if classifier is None else classifier
        asked = [] if classifier is None else [Classify(classifier, x, label, active and self.classifier_grad)]
        beliefs = yield asked
        belief = beliefs[0] if beliefs else None
        p_target = None if belief is None else belief.probs.gather(1, label[:, None])[:, 0]
        if not active:
            (denoised,) = yield [Denoise(net, x, label)]
            return Prediction(denoised, torch.zeros_like(denoised), p_target)
        denoised, direction = yield from self.direction(net, x, sigma, label, belief)
        delta = self.weight * direction
        return Prediction(denoised + delta, delta, p_target)

    def __call__(self, net, x: Tensor, sigma: float, label: Tensor, probe=None) -> Prediction:
        """D_w(x; sigma, label) for one batch."""
        return evaluate_together([self.evaluate(net, x, sigma, label, probe)], sigma)[0]

    def direction(self, net, x: Tensor, sigma: float, label: Tensor, belief: Belief | None
                  ) -> Generator[list[Denoise], list[Tensor], tuple[Tensor, Tensor]]:
        """Ask for denoiser outputs; return (D(x|c), Delta). `belief` is the classifier's answer, if used."""
        raise NotImplementedError(f"{type(self).__name__} has no guidance direction")


@dataclass(frozen=True)
class ClassifierFree(Guidance):
    """Ho & Salimans (2022), Eq. 6: Delta = D(x|c) - D(x|null)."""

    def direction(self, net, x, sigma, label, belief):
        cond, uncond = yield [Denoise(net, x, label), Denoise(net, x, torch.full_like(label, NULL_LABEL))]
        return cond, cond - uncond


@dataclass(frozen=True)
class Autoguidance(Guidance):
    """Karras et al. (2024), Eq. 1: Delta = D(x|c) - D_weak(x|c)."""
    weak_net: Any = None
    requires: ClassVar[tuple[str, ...]] = ("weak_net",)

    def direction(self, net, x, sigma, label, belief):
        cond, weak = yield [Denoise(net, x, label), Denoise(self.weak_net, x, label)]
        return cond, cond - weak


@dataclass(frozen=True)
class ClassifierGuidance(Guidance):
    """Dhariwal & Nichol (2021), Alg. 2 on D: Delta = sigma^2 grad_x log p(c | x, sigma)."""
    classifier: Any = None
    requires: ClassVar[tuple[str, ...]] = ("classifier",)
    classifier_grad: ClassVar[bool] = True

    def direction(self, net, x, sigma, label, belief):
        (cond,) = yield [Denoise(net, x, label)]
        return cond, sigma**2 * belief.grad


@dataclass(frozen=True)
class GradientFree(Guidance):
    """Shenoy et al. (2024), GFCG: Delta = a (D(x|c) - D(x|c_ref)); c_ref, a from p(.|x) (module docstring)."""
    classifier: Any = None
    requires: ClassVar[tuple[str, ...]] = ("classifier",)

    def direction(self, net, x, sigma, label, belief):
        p = belief.probs                                                    # (B, K), no gradient
        p_target = p.gather(1, label[:, None])[:, 0]
        c_ref = p.scatter(1, label[:, None], -1.0).argmax(dim=1)            # most-confused other class
        cond, ref = yield [Denoise(net, x, label), Denoise(net, x, c_ref)]
        a = (1 - p_target).view(-1, *[1] * (x.ndim - 1))
        return cond, a * (cond - ref)


GUIDANCE: dict[str, type[Guidance]] = {
    "unguided": Guidance,
    "classifier": ClassifierGuidance,
    "cfg": ClassifierFree,
    "gfcg": GradientFree,
    "autoguidance": Autoguidance,
}

# Network evaluations per step, with guidance on (denoiser-equivalent forwards; classifier passes extra).
NFE_PER_STEP = {"unguided": 1, "classifier": 1, "cfg": 2, "gfcg": 2, "autoguidance": 2}


def effective_weight(method: str, weight: float) -> float:
    """The w a method actually uses: unguided ignores w."""
    return 0.0 if GUIDANCE[method] is Guidance else weight


def nfe_per_sample(method: str, weight: float, interval: Interval, sigmas: list[float]) -> int:
    """Denoiser evaluations per sample over the noise levels `sigmas` (a batched pair of labels counts 2)."""
    guidance = Guidance(weight=effective_weight(method, weight), interval=interval)
    return sum(NFE_PER_STEP[method] if guidance.active(sigma) else 1 for sigma in sigmas)


def make_guidance(method: str, weight: float, interval: Interval = Interval(), **models: Any) -> Guidance:
    """Build a method by name; `models` supplies what it `requires` (e.g. classifier=..., weak_net=...)."""
    cls = GUIDANCE[method]
    missing = [name for name in cls.requires if models.get(name) is None]
    if missing:
        raise ValueError(f"guidance {method!r} needs {', '.join(missing)}")
    return cls(weight=effective_weight(method, weight), interval=interval,
               **{name: models[name] for name in cls.requires})
