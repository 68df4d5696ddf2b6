"""The engine API: the only module that wires models, guidance and the sampler together.

    models = Models.load()                                   # verified local weights (weights/)
    request = Request(label=3, method="cfg", weight=3.0, num_samples=8, seed=0)
    steps = list(generate(models, request))                  # num_steps + 1 Steps; steps[-1].x are the samples
    for per_request in generate_together(models, [r1, r2]):  # several requests in lockstep, batched per step

Every request is validated here (not only in the UI), and raises RequestError with a readable message.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import checkpoints
from .config import IMAGE_SHAPE, LIMITS, METHODS, NUM_CLASSES, Interval, SamplerConfig
from .guidance import Guidance, Prediction, evaluate_together, make_guidance
from .sampling import SAMPLERS, ConcatNoise, NoiseSource, Step, final, sample, split
from .schedule import karras_sigmas


class RequestError(ValueError):
    """A request outside the accepted ranges; the message is meant for the user."""


@dataclass(frozen=True)
class Models:
    """Every network the demo uses, loaded once."""
    net: nn.Module                   # main denoiser D(x, sigma, label)
    weak_net: nn.Module              # autoguidance guide, same interface
    classifier: nn.Module            # noisy classifier: logits(x, sigma)
    eval_classifier: nn.Module       # clean classifier, metrics only
    device: torch.device = field(default=torch.device("cpu"))

    @classmethod
    def load(cls, folder: Path = checkpoints.WEIGHTS_DIR, device: str | torch.device = "cpu") -> Models:
        device = torch.device(device)
        names = {"net": "denoiser", "weak_net": "weak_denoiser", "classifier": "classifier",
                 "eval_classifier": "eval_classifier"}
        return cls(**{key: checkpoints.load(name, folder, device) for key, name in names.items()}, device=device)

    def guidance_models(self) -> dict[str, nn.Module]:
        return {"weak_net": self.weak_net, "classifier": self.classifier}


def _check_number(name: str, value, low: float, high: float, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RequestError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise RequestError(f"{name} must be finite, got {value!r}")
    if integer and int(value) != value:
        raise RequestError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


def parse_int(name: str, value, low: int, high: int) -> int:
    """A widget or API value that must be a whole number in [low, high]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise RequestError(f"{name} must be a whole number, got {value!r}")
    if not low <= number <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {int(number)}")
    return int(number)


def parse_float(name: str, value, default: float | None = None) -> float:
    """A widget or API value that must be a number; empty means `default` (required if None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise RequestError(f"{name} is required")
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class Request:
    """One sampling run: class `label`, guidance `method` at weight w, `num_samples` samples from `seed`."""
    label: int
    method: str = "cfg"
    weight: float = 3.0
    num_samples: int = 8
    seed: int = 0
    sampler: SamplerConfig = SamplerConfig()
    interval: Interval = Interval()

    def __post_init__(self) -> None:
        _check_number("class", self.label, 0, NUM_CLASSES - 1, integer=True)
        if self.method not in METHODS:
            raise RequestError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        _check_number("guidance weight w", self.weight, 0, LIMITS.max_weight)
        _check_number("number of samples", self.num_samples, 1, LIMITS.max_samples, integer=True)
        _check_number("seed", self.seed, 0, LIMITS.max_seed, integer=True)
        _check_number("steps", self.sampler.num_steps, 1, LIMITS.max_steps, integer=True)
        if self.sampler.sampler not in SAMPLERS:
            raise RequestError(f"unknown sampler {self.sampler.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        lo, hi = self.interval.sigma_lo, self.interval.sigma_hi
        _check_number("guidance interval low sigma", lo, 0, LIMITS.sigma_max)
        if isinstance(hi, bool) or not isinstance(hi, numbers.Real) or math.isnan(hi) or hi < lo:
            raise RequestError(f"guidance interval high sigma must be a number >= the low sigma ({lo:g}), got {hi!r}")
        for f in ("label", "num_samples", "seed"):
            object.__setattr__(self, f, int(getattr(self, f)))
        object.__setattr__(self, "weight", float(self.weight))


# How sampling turns autograd off: inference mode (no version counters or view tracking); on this CPU it
# measured within noise of no_grad (1.00-1.01x, `python -m demo.bench`, "tried"). Classifier guidance
# re-enables autograd for its own gradient only.
NO_AUTOGRAD = torch.inference_mode


class GuidedRun(NamedTuple):
    """One run inside a batch sampled together: its guidance, a class per sample (B,) and its seed."""
    guidance: Guidance
    labels: Tensor
    seed: int


def sample_runs(models: Models, runs: Sequence[GuidedRun], sampler: SamplerConfig = SamplerConfig(),
                record: bool = True) -> Iterator[Step]:
    """Sample several runs side by side in lockstep through the one sampler loop: per step, each network is
    called once on every row asked of it (guidance.evaluate_together). Steps hold all runs concatenated
    along the batch (split them with sampling.split); `record` adds p(label | x, sigma) per step.

    Each run's noise comes from its own seed, so a run gives the same samples alone or in company (up to
    float rounding of the larger batch). Not validated: `generate` is the checked entry point.
    """
    labels = [run.labels.to(models.device) for run in runs]
    sizes = [len(label) for label in labels]
    all_labels = torch.cat(labels)
    sigmas = karras_sigmas(sampler.num_steps, sampler.sigma_min, sampler.sigma_max, sampler.rho)
    noise = ConcatNoise([NoiseSource(run.seed, size, models.device) for run, size in zip(runs, sizes)])
    probe = models.classifier if record else None

    def denoise(x: Tensor, sigma: float) -> Prediction:
        with NO_AUTOGRAD():
            evaluations = [run.guidance.evaluate(models.net, part, sigma, label, probe)
                           for run, part, label in zip(runs, x.split(sizes), labels)]
            return Prediction.cat(evaluate_together(evaluations, sigma))

    def final_probe(x: Tensor, sigma: float) -> Tensor:
        with NO_AUTOGRAD():
            return models.classifier(x, sigma).softmax(dim=1).gather(1, all_labels[:, None])[:, 0]

    return sample(denoise, sigmas, noise, IMAGE_SHAPE, sampler.sampler, sampler.clip_denoised,
                  final_probe if record else None)


def sample_labels(models: Models, method: str, weight: float, labels: Tensor, seed: int,
                  sampler: SamplerConfig = SamplerConfig(), interval: Interval = Interval(),
                  record: bool = True) -> Iterator[Step]:
    """The trajectory of one guided run with a label per sample (B,) (evaluation: many classes at once)."""
    guidance = make_guidance(method, weight, interval, **models.guidance_models())
    return sample_runs(models, [GuidedRun(guidance, labels, seed)], sampler, record)


def generate_together(models: Models, requests: Sequence[Request], record: bool = True) -> Iterator[list[Step]]:
    """Validated requests sharing one sampler configuration, sampled together; yields per step one Step per
    request. This is how a comparison runs all its methods at once."""
    if not requests:
        return iter(())
    if any(r.sampler != requests[0].sampler for r in requests):
        raise RequestError("requests sampled together must share the sampler settings (steps, sampler)")
    runs = [GuidedRun(make_guidance(r.method, r.weight, r.interval, **models.guidance_models()),
                      torch.full((r.num_samples,), r.label, dtype=torch.long), r.seed) for r in requests]
    sizes = [r.num_samples for r in requests]
    return (split(step, sizes) for step in sample_runs(models, runs, requests[0].sampler, record))


def generate(models: Models, request: Request, record: bool = True) -> Iterator[Step]:
    """Yield the trajectory of one validated request (num_steps + 1 Steps)."""
    return (steps[0] for steps in generate_together(models, [request], record))


def generate_final(models: Models, request: Request) -> Tensor:
    """Only the final samples (B, 1, 28, 28) in [-1, 1]."""
    return final(generate(models, request, record=False))


@torch.no_grad()
def evaluate_images(models: Models, images: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """One pass of the evaluation classifier over images in [-1, 1]: probabilities (N, NUM_CLASSES) and
    penultimate features (N, feature_dim), the space of every sample metric."""
    probs, feats = [], []
    for i in range(0, len(images), batch_size):
        f = models.eval_classifier.features(images[i:i + batch_size].to(models.device).clamp(-1, 1))
        feats.append(f.cpu())
        probs.append(models.eval_classifier.head(f).softmax(1).cpu())
    return torch.cat(probs), torch.cat(feats)


def classify(models: Models, images: Tensor) -> Tensor:
    """Evaluation-classifier probabilities (N, NUM_CLASSES)."""
    return evaluate_images(models, images)[0]


def features(models: Models, images: Tensor) -> Tensor:
    """Evaluation-classifier penultimate features (N, feature_dim)."""
    return evaluate_images(models, images)[1]

