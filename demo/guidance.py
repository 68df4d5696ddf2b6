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

The neutral setting (w = 0) and the guidance interval (Kynkaanniemi et al. 2024: guide only for
sigma_lo < sigma <= sigma_hi) are handled once, in `Guidance.__call__`, and skip the extra evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from .config import NULL_LABEL, Interval


class Prediction(NamedTuple):
    denoised: Tensor      # guided x0 estimate D_w
    delta: Tensor         # what guidance added: D_w - D(x|c) = w * Delta (zeros when off)
    p_target: Tensor | None = None   # p(c | x, sigma) if the method computed it anyway, else None


def _batched(net, x: Tensor, sigma: float, label_a: Tensor, label_b: Tensor) -> tuple[Tensor, Tensor]:
    """D(x|a), D(x|b) in ONE forward pass over the concatenated batch."""
    out = net(torch.cat([x, x]), sigma, torch.cat([label_a, label_b]))      # (2B, ...)
    return out.chunk(2)


@dataclass(frozen=True)
class Guidance:
    """Unguided conditional sampling; the base of every method: D + weight * direction in the interval."""
    weight: float = 0.0
    interval: Interval = Interval()
    requires: ClassVar[tuple[str, ...]] = ()       # models a method needs, by Models field name

    def active(self, sigma: float) -> bool:
        """Whether guidance is applied (and its extra evaluations paid) at this noise level."""
        return self.weight != 0 and self.interval.contains(sigma)

    def __call__(self, net, x: Tensor, sigma: float, label: Tensor) -> Prediction:
        if not self.active(sigma):
            denoised = net(x, sigma, label)
            return Prediction(denoised, torch.zeros_like(denoised))
        denoised, direction, p_target = self.direction(net, x, sigma, label)
        delta = self.weight * direction
        return Prediction(denoised + delta, delta, p_target)

    def direction(self, net, x: Tensor, sigma: float, label: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(D(x|c), Delta, p(c|x) or None)."""
        raise NotImplementedError(f"{type(self).__name__} has no guidance direction")


@dataclass(frozen=True)
class ClassifierFree(Guidance):
    """Ho & Salimans (2022), Eq. 6: Delta = D(x|c) - D(x|null)."""

    def direction(self, net, x, sigma, label):
        cond, uncond = _batched(net, x, sigma, label, torch.full_like(label, NULL_LABEL))
        return cond, cond - uncond, None


@dataclass(frozen=True)
class Autoguidance(Guidance):
    """Karras et al. (2024), Eq. 1: Delta = D(x|c) - D_weak(x|c)."""
    weak_net: Any = None
    requires: ClassVar[tuple[str, ...]] = ("weak_net",)

    def direction(self, net, x, sigma, label):
        cond = net(x, sigma, label)
        return cond, cond - self.weak_net(x, sigma, label), None


@dataclass(frozen=True)
class ClassifierGuidance(Guidance):
    """Dhariwal & Nichol (2021), Alg. 2 on D: Delta = sigma^2 grad_x log p(c | x, sigma)."""
    classifier: Any = None
    requires: ClassVar[tuple[str, ...]] = ("classifier",)

    def direction(self, net, x, sigma, label):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_p = self.classifier(x_in, sigma).log_softmax(dim=1).gather(1, label[:, None])[:, 0]
            (grad,) = torch.autograd.grad(log_p.sum(), x_in)
        return net(x, sigma, label), sigma**2 * grad, log_p.detach().exp()


@dataclass(frozen=True)
class GradientFree(Guidance):
    """Shenoy et al. (2024), GFCG: Delta = a (D(x|c) - D(x|c_ref)); c_ref, a from p(.|x) (module docstring)."""
    classifier: Any = None
    requires: ClassVar[tuple[str, ...]] = ("classifier",)

    def direction(self, net, x, sigma, label):
        p = self.classifier(x, sigma).softmax(dim=1)                        # (B, K)
        p_target = p.gather(1, label[:, None])[:, 0]
        c_ref = p.scatter(1, label[:, None], -1.0).argmax(dim=1)            # most-confused other class
        cond, ref = _batched(net, x, sigma, label, c_ref)
        a = (1 - p_target).view(-1, *[1] * (x.ndim - 1))
        return cond, a * (cond - ref), p_target


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
