"""Guidance: one small object that turns the conditional denoiser into a guided one.

The convention, for every method:

    D_w(x; sigma, c) = D(x; sigma, c) + w * Delta(x; sigma, c),      w >= 0,   w = 0  <=>  unguided

with D the class-conditional denoiser (x0 estimate) and Delta the method's direction:

    classifier-free (Ho & Salimans 2022)      Delta = D(x|c) - D(x|null)       eps form: (1+w) eps_c - w eps_null
    autoguidance (Karras et al. 2024)         Delta = D(x|c) - D_weak(x|c)     = D_weak + (1+w)(D - D_weak)
    classifier (Dhariwal & Nichol 2021)       Delta = sigma^2 grad_x log p(c|x, sigma)
                                                                               eps form: eps - w sigma grad log p
    gradient-free classifier (Shenoy et al.)  Delta = a * (D(x|c) - D(x|c_ref)),  c_ref, a from a classifier
    GFCG + autoguidance (our guess)           Delta = a * (D(x|c) - D_weak(x|c_ref))

Mapping to other code bases: EDM2's `guidance` = 1 + w; diffusers' / k-diffusion's CFG scale = 1 + w;
guided-diffusion's `classifier_scale` = w. Since D = x - sigma * eps and score = (D - x) / sigma^2 (Tweedie),
CFG at weight w samples the score of p(x|c)^(1+w) / p(x)^w, and classifier guidance with the exact classifier
gives exactly the same D_w (tests/test_guidance.py checks both on an analytic Gaussian mixture).

GFCG (Shenoy et al. 2024, arXiv 2411.15393): a rule inferred from the abstract, not checked against the paper's
equations (its method section and code were not available to us); GradientFree states it and its open choices
(GFCG_OPTIONS). GFCG + autoguidance takes the reference prediction from the weak network: our guess.

How a method is written: one class with two plain methods and its facts as class attributes.
  requests(net, x, label, belief) -> list[Call]       the denoiser evaluations it needs
  combine(outputs, sigma, belief) -> (D(x|c), Delta)  the direction, from their outputs
A method that needs p(c|x) (or its gradient) names its classifier in `classifier_used`. The batching of every
method's calls into one call per network, the neutral setting w = 0 and the guidance interval live once in
batching.py, so a method reads like EDM2's few lines around the denoiser. Subclassing with
`key="name"` registers a method in GUIDANCE; nothing else changes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

from demo.engine.batching import (
    Belief,
    Call,
    Evaluation,
    Given,
    classify,
    evaluate_together,
    target_probability,
)
from demo.engine.config import NULL_LABEL, SIGMA_MIN, Interval, SamplerConfig
from demo.engine.noise import karras_sigmas
from demo.engine.samplers import Prediction

GUIDANCE: dict[str, type[Guidance]] = {}


@dataclass(frozen=True)
class Guidance:
    """Unguided conditional sampling; the base of every method: D + weight * direction in the interval."""
    weight: float = 0.0
    interval: Interval = Interval()

    key: ClassVar[str] = "unguided"
    title: ClassVar[str] = "Unguided"
    short_title: ClassVar[str] = "Unguided"
    paper: ClassVar[str] = "the conditional model alone; w is ignored"
    colour: ClassVar[str] = "#4b5563"                 # Okabe & Ito's palette: distinct under colour blindness
    nfe_per_step: ClassVar[int] = 1                     # denoiser evaluations per step with guidance on
    default_weight: ClassVar[float] = 0.0
    requires: ClassVar[tuple[str, ...]] = ()            # models it needs, by Models field name
    classifier_grad: ClassVar[bool] = False             # whether it needs grad_x log p(c|x), not just p

    def __init_subclass__(cls, key: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if key is not None:
            cls.key = key
            GUIDANCE[key] = cls

    def active(self, sigma: float) -> bool:
        """Whether guidance is applied (and its extra evaluations paid) at this noise level."""
        return self.weight != 0 and self.interval.contains(sigma)

    def classifier_used(self) -> Callable | None:
        """The classifier whose Belief this method reads (None: it reads none)."""
        return None

    def requests(self, net: Callable, x: Tensor, sigma: float, label: Tensor, belief: Belief | None
                 ) -> list[Call]:
        """The denoiser evaluations needed when guidance is active."""
        raise NotImplementedError(f"{type(self).__name__} has no guidance direction")

    def combine(self, outputs: Sequence[Tensor], x: Tensor, sigma: float, label: Tensor, belief: Belief | None
                ) -> tuple[Tensor, Tensor]:
        """(D(x|c), Delta) from the outputs of `requests`, in order."""
        raise NotImplementedError(f"{type(self).__name__} has no guidance direction")

    def __call__(self, net: Callable, x: Tensor, sigma: float, label: Tensor, probe: Callable | None = None
                 ) -> Prediction:
        """D_w(x; sigma, label) for one batch."""
        return evaluate_together([Evaluation(self, net, x, sigma, label, probe)])[0]


GUIDANCE["unguided"] = Guidance


# ---- the methods: one class each -------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierGuidance(Guidance, key="classifier"):
    """Dhariwal & Nichol (2021), Alg. 2 on D: Delta = sigma^2 grad_x log p(c | x, sigma)."""
    classifier: Any = None
    title: ClassVar[str] = "Classifier guidance"
    short_title: ClassVar[str] = "Classifier"
    paper: ClassVar[str] = "Dhariwal & Nichol 2021"
    colour: ClassVar[str] = "#D55E00"
    default_weight: ClassVar[float] = 2.0
    requires: ClassVar[tuple[str, ...]] = ("classifier",)
    classifier_grad: ClassVar[bool] = True

    def classifier_used(self):
        return self.classifier

    def requests(self, net, x, sigma, label, belief):
        return [Call(net, x, label)]

    def combine(self, outputs, x, sigma, label, belief):
        return outputs[0], sigma**2 * belief.grad


@dataclass(frozen=True)
class ClassifierFree(Guidance, key="cfg"):
    """Ho & Salimans (2022), Eq. 6: Delta = D(x|c) - D(x|null)."""
    title: ClassVar[str] = "Classifier-free guidance"
    short_title: ClassVar[str] = "Classifier-free"
    paper: ClassVar[str] = "Ho & Salimans 2022"
    colour: ClassVar[str] = "#0072B2"
    nfe_per_step: ClassVar[int] = 2
    default_weight: ClassVar[float] = 1.0

    def requests(self, net, x, sigma, label, belief):
        return [Call(net, x, label), Call(net, x, torch.full_like(label, NULL_LABEL))]

    def combine(self, outputs, x, sigma, label, belief):
        cond, uncond = outputs
        return cond, cond - uncond


SIGMA_READ_X0 = SIGMA_MIN      # GFCG reads="x0": the noise level the classifier is told (the schedule's lowest)
GFCG_OPTIONS: dict[str, tuple[str, ...]] = {      # GFCG's open choices; the first value of each is the default
    "reads": ("x_t", "x0"),
    "reference": ("confused", "null"),
    "scale": ("1-p", "margin"),
}


@dataclass(frozen=True)
class GradientFree(Guidance, key="gfcg"):
    """Shenoy et al. (2024), GFCG: Delta = a (D(x|c) - D(x|c_ref)), with c_ref and a from a classifier used without
    gradient. A rule inferred from the abstract, not checked against the paper's equations (module docstring).

    reads      what the classifier reads: "x_t" the noisy x at sigma (default), or "x0" the conditional x0
               estimate D(x|c) at SIGMA_READ_X0 (D(x|c) is computed before c_ref is chosen and reused: still
               two denoiser evaluations per step; the classifier runs on x0 in `requests` and again in `combine`)
    reference  the reference class: "confused" c_ref = argmax_{k != c} p_k (default), or "null" the
               unconditional label (an ablation: GFCG's scale a on classifier-free guidance's direction)
    scale      a: "1-p" a = 1 - p_c (default), or "margin" a = min(1, p_ref / p_c), p_ref = max_{k != c} p_k
               (= p_{c_ref} for reference="confused"); both lie in [0, 1] and vanish as p_c -> 1
    """
    classifier: Any = None
    reads: str = "x_t"
    reference: str = "confused"
    scale: str = "1-p"
    title: ClassVar[str] = "Gradient-free classifier guidance"
    short_title: ClassVar[str] = "Gradient-free"
    paper: ClassVar[str] = "Shenoy et al. 2024"
    colour: ClassVar[str] = "#009E73"
    nfe_per_step: ClassVar[int] = 2
    default_weight: ClassVar[float] = 3.0
    requires: ClassVar[tuple[str, ...]] = ("classifier",)

    def __post_init__(self):
        for name, allowed in GFCG_OPTIONS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{self.key}: {name} must be one of {', '.join(map(repr, allowed))}, "
                                 f"got {getattr(self, name)!r}")

    def classifier_used(self):
        return self.classifier

    def reference_net(self, net: Callable) -> Callable:
        """The network that predicts D(x|c_ref)."""
        return net

    def reading(self, cond: Tensor, label: Tensor, belief: Belief) -> Belief:
        """The classifier's belief that chooses c_ref and a: round 1's on x_t, or a fresh one on x0 = D(x|c)."""
        return belief if self.reads == "x_t" else classify(self.classifier, cond, SIGMA_READ_X0, label, False)

    @staticmethod
    def others(probs: Tensor, label: Tensor) -> Tensor:
        """p (B, K) with the target class masked out (-1): its max / argmax run over k != c."""
        return probs.scatter(1, label[:, None], -1.0)

    def reference_class(self, probs: Tensor, label: Tensor) -> Tensor:
        """c_ref (B,) from the classifier's p (B, K)."""
        if self.reference == "null":
            return torch.full_like(label, NULL_LABEL)
        return self.others(probs, label).argmax(dim=1)                           # most-confused other class

    def adaptive_scale(self, probs: Tensor, label: Tensor) -> Tensor:
        """a (B,) in [0, 1] from the classifier's p (B, K)."""
        if self.scale == "1-p":
            return 1 - target_probability(probs, label)                           # confusion
        p_c = target_probability(probs, label)
        p_ref = self.others(probs, label).amax(dim=1)                              # max_{k != c} p_k
        return torch.where(p_c > 0, p_ref / p_c, 1.0).clamp(0.0, 1.0)

    def requests(self, net, x, sigma, label, belief):
        first = Call(net, x, label)
        if self.reads == "x0":                  # D(x|c) is needed to choose c_ref: compute it now, hand it on
            cond = net(x, sigma, label)
            first = Call(Given(cond), x, label)
            if self.reference == "confused":
                belief = self.reading(cond, label, belief)
        c_ref = self.reference_class(belief.probs, label)
        return [first, Call(self.reference_net(net), x, c_ref)]

    def combine(self, outputs, x, sigma, label, belief):
        cond, ref = outputs
        a = self.adaptive_scale(self.reading(cond, label, belief).probs, label)
        return cond, a.view(-1, *[1] * (cond.ndim - 1)) * (cond - ref)


@dataclass(frozen=True)
class Autoguidance(Guidance, key="autoguidance"):
    """Karras et al. (2024), Eq. 1: Delta = D(x|c) - D_weak(x|c)."""
    weak_net: Any = None
    title: ClassVar[str] = "Autoguidance"
    short_title: ClassVar[str] = "Autoguidance"
    paper: ClassVar[str] = "Karras et al. 2024"
    colour: ClassVar[str] = "#CC79A7"
    nfe_per_step: ClassVar[int] = 2
    default_weight: ClassVar[float] = 0.5
    requires: ClassVar[tuple[str, ...]] = ("weak_net",)

    def requests(self, net, x, sigma, label, belief):
        return [Call(net, x, label), Call(self.weak_net, x, label)]

    def combine(self, outputs, x, sigma, label, belief):
        cond, weak = outputs
        return cond, cond - weak


@dataclass(frozen=True)
class GradientFreeAutoguidance(GradientFree, key="gfcg_ag"):
    """GFCG + autoguidance: Delta = a (D(x|c) - D_weak(x|c_ref)), the reference prediction from the weak network.

    Shenoy et al. (2024) report combining GFCG with autoguidance; how they combine them is not in the abstract.
    This rule is OUR GUESS, not the paper's equations: GFCG's c_ref and a (same options), autoguidance's weak
    network for the reference. Two denoiser evaluations per step (main at c, weak at c_ref)."""
    weak_net: Any = None
    title: ClassVar[str] = "GFCG + autoguidance"
    short_title: ClassVar[str] = "GFCG + AG"
    paper: ClassVar[str] = "Shenoy et al. 2024 (combination: our guess)"
    colour: ClassVar[str] = "#56B4E9"
    default_weight: ClassVar[float] = 1.0
    requires: ClassVar[tuple[str, ...]] = ("classifier", "weak_net")

    def reference_net(self, net):
        return self.weak_net


METHODS = tuple(GUIDANCE)      # the shipped methods, in display order (unguided first)


def uses_guide(method: str) -> bool:
    """Whether a method reads autoguidance's guide (the weak network), so that the guide choice changes it."""
    return "weak_net" in GUIDANCE[method].requires


def option_names(method: str) -> tuple[str, ...]:
    """The settings a method has besides weight, interval and its models (GFCG's: reads, reference, scale)."""
    cls = GUIDANCE[method]
    return tuple(f.name for f in fields(cls) if f.name not in ("weight", "interval", *cls.requires))


def make_guidance(method: str, weight: float, interval: Interval = Interval(),
                  options: Mapping[str, Any] | None = None, **models: Any) -> Guidance:
    """Build a method by name; `models` supplies what it `requires` (e.g. classifier=..., weak_net=...) and
    `options` its settings (e.g. options={"reads": "x0"} for gfcg / gfcg_ag). Unguided ignores w (weight 0)."""
    cls = GUIDANCE[method]
    missing = [name for name in cls.requires if models.get(name) is None]
    if missing:
        raise ValueError(f"guidance {method!r} needs {', '.join(missing)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(option_names(method)))
    if unknown:
        raise ValueError(f"guidance {method!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(option_names(method)) or 'none'}")
    return cls(weight=0.0 if cls is Guidance else weight, interval=interval,
               **{name: models[name] for name in cls.requires}, **options)


def nfe_per_sample(method: str, weight: float, interval: Interval, sampler: SamplerConfig) -> int:
    """Denoiser evaluations per sample of a run (a batched pair of labels counts 2; classifier passes do not)."""
    guidance = make_guidance(method, weight, interval, **{name: True for name in GUIDANCE[method].requires})
    sigmas = karras_sigmas(sampler.num_steps, sampler.sigma_min, sampler.sigma_max, sampler.rho)[:-1].tolist()
    return sum(guidance.nfe_per_step if guidance.active(sigma) else 1 for sigma in sigmas)
