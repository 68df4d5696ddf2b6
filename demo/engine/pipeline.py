"""The engine API: the only module that wires models, guidance and the sampler together.

    models = Models.load()                                   # verified local weights (weights/)
    request = Request(label=3, method="cfg", weight=3.0, num_samples=8, seed=0)
    steps = list(generate(models, request))                  # num_steps + 1 Steps; steps[-1].x are the samples
    for per_request in generate_together(models, [r1, r2]):  # several requests in lockstep, batched per step
    runs = [Run.of(models, r) for r in requests]             # or step by step, joining and leaving at will:
    steps = advance_together(models, runs)                   # one step of each (any noise levels), one batch

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

from demo.engine import checkpoints
from demo.engine.batching import (
    Evaluation,
    classify,
    evaluate_together,
    target_probability,
)
from demo.engine.config import (
    GUIDES,
    IMAGE_SHAPE,
    LIMITS,
    NUM_CLASSES,
    Interval,
    SamplerConfig,
)
from demo.engine.guidance import GUIDANCE, Guidance, make_guidance, nfe_per_sample, uses_guide
from demo.engine.metrics import Realism
from demo.engine.noise import NoiseSource, karras_sigmas
from demo.engine.samplers import (
    SAMPLERS,
    Step,
    Trajectory,
    concat,
    final,
    split,
)
from demo.engine.validation import RequestError, checked, choice, shown

__all__ = ["Models", "Request", "RequestError", "RunSpec", "Run", "advance_together", "finish_together",
           "sample_runs", "generate_together",
           "generate", "generate_final"]


@dataclass(frozen=True)
class Models:
    """Every network the demo uses, loaded once."""
    net: nn.Module                   # main denoiser D(x, sigma, label)
    weak_net: nn.Module              # autoguidance's default guide, same interface
    classifier: nn.Module            # noisy classifier: logits(x, sigma)
    eval_classifier: nn.Module       # clean classifier, metrics only
    realism: Realism                 # real digits in its features: the per-sample realism flag
    device: torch.device = field(default=torch.device("cpu"))
    guides: dict[str, nn.Module] = field(default_factory=dict)   # the other guides of config.GUIDES, by key

    @classmethod
    def load(cls, folder: Path = checkpoints.WEIGHTS_DIR, device: str | torch.device = "cpu") -> Models:
        """Every network; the optional guides (config.GUIDES beyond the default) where their files exist."""
        device = torch.device(device)
        names = {"net": "denoiser", "weak_net": GUIDES[0].file, "classifier": "classifier",
                 "eval_classifier": "eval_classifier"}
        reference = checkpoints.load_tensors("real_reference", folder)
        guides = {g.key: checkpoints.load(g.file, folder, device) for g in GUIDES[1:]
                  if (folder / f"{g.file}.safetensors").exists()}
        return cls(**{key: checkpoints.load(name, folder, device) for key, name in names.items()},
                   realism=Realism(reference["features"], reference["radii"]), device=device, guides=guides)

    def guide(self, key: str | None = None) -> nn.Module:
        """The autoguidance guide by config.GUIDES key (None or the first key: the default)."""
        if key in (None, GUIDES[0].key):
            return self.weak_net
        if key not in self.guides:
            raise RequestError(f"the guide {key!r} is not installed in this weights folder "
                               f"(available: {', '.join([GUIDES[0].key, *self.guides])})")
        return self.guides[key]

    def guidance_models(self, guide: str | None = None) -> dict[str, nn.Module]:
        return {"weak_net": self.guide(guide), "classifier": self.classifier}

    def for_request(self, request: Request) -> dict[str, nn.Module]:
        """The networks a request's method may need (its guide only if the method reads one)."""
        return self.guidance_models(request.guide if uses_guide(request.method) else None)

    def check(self, request: Request) -> None:
        """RequestError now, before anything is sampled, if these weights cannot sample `request`: Request
        checks the guide against config.GUIDES, this against the guides the loaded folder holds."""
        self.for_request(request)


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
    guide: str = GUIDES[0].key          # autoguidance's guide (config.GUIDES); other methods ignore it

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)   # noqa: E731 (frozen dataclass)
        fix("label", checked("class", self.label, 0, NUM_CLASSES - 1, integer=True))
        choice("method", self.method, GUIDANCE)
        choice("guide", self.guide, [g.key for g in GUIDES])
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
    def rows(self) -> int:
        """Denoiser rows this run adds to one batched step: samples x evaluations per step with guidance on."""
        return self.num_samples * GUIDANCE[self.method].nfe_per_step

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per sample (guidance.nfe_per_sample)."""
        return nfe_per_sample(self.method, self.weight, self.interval, self.sampler)


class RunSpec(NamedTuple):
    """One run inside a batch sampled together: its guidance, a class per sample (B,) and its seed."""
    guidance: Guidance
    labels: Tensor
    seed: int


class Run:
    """One guided run in flight: its guidance, a class per sample, its own noise (from its seed) and its
    sampling.Trajectory. Runs advance one step at a time, alone or together with other runs, even at other
    noise levels (advance_together): a run gives the same samples alone or in company, up to float rounding
    of the larger batch. This is what lets the app's scheduler add a request to a batch already under way."""

    def __init__(self, models: Models, guided: RunSpec, sampler: SamplerConfig = SamplerConfig()):
        self.guidance, self.seed, self.sampler = guided.guidance, guided.seed, sampler
        self.labels = guided.labels.to(models.device)
        sigmas = karras_sigmas(sampler.num_steps, sampler.sigma_min, sampler.sigma_max, sampler.rho)
        self.trajectory = Trajectory(sigmas, NoiseSource(guided.seed, len(self.labels), models.device),
                                     IMAGE_SHAPE, sampler.sampler, sampler.clip_denoised)

    @classmethod
    def of(cls, models: Models, request: Request) -> Run:
        """The run of one validated request."""
        guidance = make_guidance(request.method, request.weight, request.interval, **models.for_request(request))
        labels = torch.full((request.num_samples,), request.label, dtype=torch.long)
        return cls(models, RunSpec(guidance, labels, request.seed), request.sampler)

    @property
    def done(self) -> bool:
        return self.trajectory.done



def advance_together(models: Models, runs: Sequence[Run], record: bool = True,
                     no_autograd: Callable[[], AbstractContextManager] = torch.inference_mode) -> list[Step]:
    """One sampling step of every run (none may be done): each network is called once on every row asked of
    it (batching.evaluate_together). `record` adds p(label | x_t, sigma) from the noisy classifier: it comes
    with the guidance's own classifier calls. Sampling runs under `no_autograd` (classifier guidance
    re-enables autograd for its own gradient)."""
    probe = models.classifier if record else None
    with no_autograd():
        predictions = evaluate_together([Evaluation(run.guidance, models.net, run.trajectory.x,
                                                    run.trajectory.sigma, run.labels, probe) for run in runs])
    return [run.trajectory.advance(prediction) for run, prediction in zip(runs, predictions)]


def finish_together(models: Models, runs: Sequence[Run], record: bool = True,
                    no_autograd: Callable[[], AbstractContextManager] = torch.inference_mode) -> list[Step]:
    """The final samples of finished runs. `record` adds p(label | x) read at the schedule's lowest noise level
    sigma_min (the classifier is undefined at sigma = 0), in one classifier batch per sigma_min."""
    steps = [run.trajectory.final() for run in runs]
    if not record:
        return steps
    for sigma_min in dict.fromkeys(run.sampler.sigma_min for run in runs):
        group = [k for k, run in enumerate(runs) if run.sampler.sigma_min == sigma_min]
        labels = torch.cat([runs[k].labels for k in group])
        with no_autograd():
            belief = classify(models.classifier, torch.cat([steps[k].x for k in group]), sigma_min, labels,
                              grad=False)
        p_target = target_probability(belief.probs, labels).split([len(runs[k].labels) for k in group])
        for k, p in zip(group, p_target):
            steps[k] = replace(steps[k], p_target=p)
    return steps


def sample_runs(models: Models, runs: Sequence[RunSpec], sampler: SamplerConfig = SamplerConfig(),
                record: bool = True, no_autograd: Callable[[], AbstractContextManager] = torch.inference_mode
                ) -> Iterator[Step]:
    """Sample several runs side by side in lockstep (advance_together, then finish_together); Steps hold all
    runs concatenated along the batch (split them with sampling.split). Not validated: `generate` is the
    checked entry point."""
    active = [Run(models, run, sampler) for run in runs]
    while not active[0].done:
        yield concat(advance_together(models, active, record, no_autograd))
    yield concat(finish_together(models, active, record, no_autograd))


def generate_together(models: Models, requests: Sequence[Request], record: bool = True,
                      no_autograd: Callable[[], AbstractContextManager] = torch.inference_mode
                      ) -> Iterator[list[Step]]:
    """Validated requests sharing one sampler configuration, sampled together; yields per step one Step per
    request. This is how a comparison runs all its methods at once."""
    if not requests:
        return iter(())
    if any(r.sampler != requests[0].sampler for r in requests):
        raise RequestError("requests sampled together must share the sampler settings (steps, sampler)")
    runs = [RunSpec(make_guidance(r.method, r.weight, r.interval, **models.for_request(r)),
                      torch.full((r.num_samples,), r.label, dtype=torch.long), r.seed) for r in requests]
    sizes = [r.num_samples for r in requests]
    return (split(step, sizes) for step in sample_runs(models, runs, requests[0].sampler, record, no_autograd))


def generate(models: Models, request: Request, record: bool = True) -> Iterator[Step]:
    """Yield the trajectory of one validated request (num_steps + 1 Steps)."""
    return (steps[0] for steps in generate_together(models, [request], record))


def generate_final(models: Models, request: Request) -> Tensor:
    """Only the final samples (B, 1, 28, 28) in [-1, 1]."""
    return final(generate(models, request, record=False))
