"""The engine API: the only module that wires models, guidance and the sampler together.

    models = Models.load()                                   # verified local weights (weights/)
    request = Request(label=3, method="cfg", weight=3.0, num_samples=8, seed=0)
    steps = list(generate(models, request))                  # num_steps + 1 Steps; steps[-1].x are the samples
    for per_request in generate_together(models, [r1, r2]):  # several requests in lockstep, batched per step

Every request is validated when it is made (Request.__post_init__, not only in the UI) and raises RequestError
with a readable message.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import checkpoints
from .config import IMAGE_SHAPE, LIMITS, NUM_CLASSES, Interval, SamplerConfig
from .guidance import GUIDANCE, Evaluation, Guidance, classify, evaluate_together, make_guidance, \
    nfe_per_sample, target_probability
from .metrics import Realism
from .sampling import SAMPLERS, ConcatNoise, NoiseSource, Prediction, Step, final, sample, split
from .schedule import karras_sigmas
from .validation import RequestError, checked, choice, shown

__all__ = ["Models", "Request", "RequestError", "GuidedRun", "sample_runs", "sample_labels", "generate_together",
           "generate", "generate_final"]


@dataclass(frozen=True)
class Models:
    """Every network the demo uses, loaded once."""
    net: nn.Module                   # main denoiser D(x, sigma, label)
    weak_net: nn.Module              # autoguidance guide, same interface
    classifier: nn.Module            # noisy classifier: logits(x, sigma)
    eval_classifier: nn.Module       # clean classifier, metrics only
    realism: Realism                 # real digits in its features: the per-sample realism flag
    device: torch.device = field(default=torch.device("cpu"))

    @classmethod
    def load(cls, folder: Path = checkpoints.WEIGHTS_DIR, device: str | torch.device = "cpu") -> Models:
        device = torch.device(device)
        names = {"net": "denoiser", "weak_net": "weak_denoiser", "classifier": "classifier",
                 "eval_classifier": "eval_classifier"}
        reference = checkpoints.load_tensors("real_reference", folder)
        return cls(**{key: checkpoints.load(name, folder, device) for key, name in names.items()},
                   realism=Realism(reference["features"], reference["radii"]), device=device)

    def guidance_models(self) -> dict[str, nn.Module]:
        return {"weak_net": self.weak_net, "classifier": self.classifier}


@dataclass(frozen=True)
class Request:
    """One sampling run: class `label`, guidance `method` at weight w, `num_samples` samples from `seed`.

    Validated and normalised on creation: numbers become int/float, and an interval that holds every noise
    level of the schedule becomes Interval() (so the UI's (0, 80] and the API's default are the same request)."""
    label: int
    method: str = "cfg"
    weight: float = 3.0
    num_samples: int = 8
    seed: int = 0
    sampler: SamplerConfig = SamplerConfig()
    interval: Interval = Interval()

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)   # noqa: E731 (frozen dataclass)
        fix("label", checked("class", self.label, 0, NUM_CLASSES - 1, integer=True))
        choice("method", self.method, GUIDANCE)
        fix("weight", checked("guidance weight w", self.weight, 0, LIMITS.max_weight))
        fix("num_samples", checked("number of samples", self.num_samples, 1, LIMITS.max_samples, integer=True))
        fix("seed", checked("seed", self.seed, 0, LIMITS.max_seed, integer=True))
        if not isinstance(self.sampler, SamplerConfig):
            raise RequestError(f"sampler settings must be a SamplerConfig, got {shown(self.sampler)}")
        choice("sampler", self.sampler.sampler, SAMPLERS)
        steps = checked("steps", self.sampler.num_steps, 1, LIMITS.max_steps, integer=True)
        fix("sampler", replace(self.sampler, num_steps=steps))
        lo = checked("guidance interval low sigma", self.interval.sigma_lo, 0, LIMITS.sigma_max)
        hi = self.interval.sigma_hi
        if isinstance(hi, bool) or not isinstance(hi, numbers.Real) or math.isnan(hi) or hi < lo:
            raise RequestError(f"guidance interval high sigma must be a number >= the low sigma ({lo:g}), "
                               f"got {shown(hi)}")
        everything = lo < self.sampler.sigma_min and hi >= self.sampler.sigma_max
        fix("interval", Interval() if everything else Interval(lo, float(hi)))

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per sample (guidance.nfe_per_sample)."""
        return nfe_per_sample(self.method, self.weight, self.interval, self.sampler)


class GuidedRun(NamedTuple):
    """One run inside a batch sampled together: its guidance, a class per sample (B,) and its seed."""
    guidance: Guidance
    labels: Tensor
    seed: int


def sample_runs(models: Models, runs: Sequence[GuidedRun], sampler: SamplerConfig = SamplerConfig(),
                record: bool = True, no_autograd: Callable[[], AbstractContextManager] = torch.inference_mode
                ) -> Iterator[Step]:
    """Sample several runs side by side in lockstep through the one sampler loop: per step, each network is
    called once on every row asked of it (guidance.evaluate_together). Steps hold all runs concatenated
    along the batch (split them with sampling.split).

    `record` adds p(label | x, sigma) from the noisy classifier to every step: per step it comes with the
    guidance's own classifier calls, and for the final sample (sigma = 0, where the classifier is undefined)
    it is read at the schedule's lowest noise level sigma_min. Each run's noise comes from its own seed, so a
    run gives the same samples alone or in company (up to float rounding of the larger batch). Sampling runs
    under `no_autograd` (classifier guidance re-enables autograd for its own gradient). Not validated:
    `generate` is the checked entry point."""
    labels = [run.labels.to(models.device) for run in runs]
    sizes = [len(label) for label in labels]
    sigmas = karras_sigmas(sampler.num_steps, sampler.sigma_min, sampler.sigma_max, sampler.rho)
    noise = ConcatNoise([NoiseSource(run.seed, size, models.device) for run, size in zip(runs, sizes)])
    probe = models.classifier if record else None

    def denoise(x: Tensor, sigma: float) -> Prediction:
        with no_autograd():
            predictions = evaluate_together([Evaluation(run.guidance, models.net, part, sigma, label, probe)
                                             for run, part, label in zip(runs, x.split(sizes), labels)])
        return Prediction(*(torch.cat(parts) if all(p is not None for p in parts) else None
                            for parts in zip(*predictions)))

    for step in sample(denoise, sigmas, noise, IMAGE_SHAPE, sampler.sampler, sampler.clip_denoised):
        if record and step.p_target is None:                     # the final sample
            with no_autograd():
                belief = classify(probe, step.x, sampler.sigma_min, torch.cat(labels), grad=False)
            step = replace(step, p_target=target_probability(belief.probs, torch.cat(labels)))
        yield step


def sample_labels(models: Models, method: str, weight: float, labels: Tensor, seed: int,
                  sampler: SamplerConfig = SamplerConfig(), interval: Interval = Interval(),
                  record: bool = True) -> Iterator[Step]:
    """The trajectory of one guided run with a label per sample (B,) (evaluation: many classes at once)."""
    guidance = make_guidance(method, weight, interval, **models.guidance_models())
    return sample_runs(models, [GuidedRun(guidance, labels, seed)], sampler, record)


def generate_together(models: Models, requests: Sequence[Request], record: bool = True,
                      no_autograd: Callable[[], AbstractContextManager] = torch.inference_mode
                      ) -> Iterator[list[Step]]:
    """Validated requests sharing one sampler configuration, sampled together; yields per step one Step per
    request. This is how a comparison runs all its methods at once."""
    if not requests:
        return iter(())
    if any(r.sampler != requests[0].sampler for r in requests):
        raise RequestError("requests sampled together must share the sampler settings (steps, sampler)")
    runs = [GuidedRun(make_guidance(r.method, r.weight, r.interval, **models.guidance_models()),
                      torch.full((r.num_samples,), r.label, dtype=torch.long), r.seed) for r in requests]
    sizes = [r.num_samples for r in requests]
    return (split(step, sizes) for step in sample_runs(models, runs, requests[0].sampler, record, no_autograd))


def generate(models: Models, request: Request, record: bool = True) -> Iterator[Step]:
    """Yield the trajectory of one validated request (num_steps + 1 Steps)."""
    return (steps[0] for steps in generate_together(models, [request], record))


def generate_final(models: Models, request: Request) -> Tensor:
    """Only the final samples (B, 1, 28, 28) in [-1, 1]."""
    return final(generate(models, request, record=False))
