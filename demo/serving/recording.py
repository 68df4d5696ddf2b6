"""Runs in flight and finished: a request's pipeline.Run recorded as it goes (a few frames plus every per-step
scalar) and condensed into a FinishedRun when it ends. Used by the scheduler (runs joining and leaving a batch
at any step) and by run_methods (a fixed group in lockstep).
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from demo.engine import pixels
from demo.engine.batching import classify, target_probability
from demo.engine.metrics import evaluate_images
from demo.engine.noise import karras_sigmas
from demo.engine.pipeline import Models, Request, Run, advance_together, finish_together
from demo.engine.progress import Live, Progress

NUM_FRAMES = 41            # trajectory states kept per run (evenly spaced, first and last included)
BATCH_IDS = itertools.count(1)


@dataclass(frozen=True)
class FinishedRun:
    """A finished run, condensed for display: final samples, their evaluation, and a few trajectory frames."""
    request: Request
    samples: torch.Tensor          # (B, 1, 28, 28) in [-1, 1]
    pixels: np.ndarray             # (B, 28, 28) uint8, the samples as shown
    probs: torch.Tensor            # (B, 10) evaluation-classifier probabilities
    features: torch.Tensor         # (B, 128) evaluation-classifier features
    realism: torch.Tensor          # (B,) distance to the real digits / their k-NN radius: > 1 is off-manifold
    frame_steps: np.ndarray        # (F,) step indices of the kept frames
    frame_sigmas: np.ndarray       # (F,)
    frames_x: np.ndarray           # (F, B, 28, 28) uint8, x_t shown at unit scale
    frames_denoised: np.ndarray    # (F, B, 28, 28) uint8, guided x0 estimate
    p_target: np.ndarray           # (N + 1, B) p(target | x_t) from the noisy classifier; NaN where no method read
                                   # it while sampling (probe() reads it for the followed sample when it is shown)
    guidance_norm: np.ndarray      # (N, B) ||clamp(D_w) - clamp(D)||: what guidance changed in the followed x0
    batch: int                     # id of the sampling batch this run was computed in (runs in lockstep share it)
    seconds: float                 # wall time of that batch
    states: np.ndarray             # (N + 1, B, 1, 28, 28) float32: x_t entering every step, then the sample

    @property
    def nbytes(self) -> int:
        """Approximate memory held by this run (for the cache's byte budget)."""
        return sum(a.nbytes for a in (self.frames_x, self.frames_denoised, self.p_target, self.guidance_norm,
                                      self.pixels, self.states)) + 5 * self.samples.numel() * 4

    def state_sigmas(self) -> np.ndarray:
        """(N + 1,) the noise level at which p(c | x) reads each state (the sample: at sigma_min)."""
        sampler = self.request.sampler
        sigmas = karras_sigmas(sampler.num_steps, sampler.sigma_min, sampler.sigma_max, sampler.rho).numpy()
        return np.concatenate([sigmas[:-1], [sampler.sigma_min]])

    def realistic(self) -> torch.Tensor:
        """(B,) bool: inside the real digits' manifold (metrics.Realism)."""
        return self.realism <= 1

    def verdicts(self) -> list[str]:
        """Per sample: "correct" (the target class and realistic), "wrong" (another class) or "unrealistic"
        (off the real digits' manifold, whatever the classifier calls it)."""
        pred = self.probs.argmax(dim=1)
        return ["unrealistic" if not real else "correct" if p == self.request.label else "wrong"
                for p, real in zip(pred.tolist(), self.realistic().tolist())]

    def accuracy(self) -> float:
        return (self.probs.argmax(1) == self.request.label).float().mean().item()

    def confidence(self) -> float:
        """Mean evaluation-classifier probability of the target class."""
        return self.probs[:, self.request.label].mean().item()


class Recorder:
    """A request's Run, recorded step by step: num_frames evenly spaced states plus every per-step scalar."""

    def __init__(self, models: Models, request: Request, batch: int, num_frames: int = NUM_FRAMES):
        self.request, self.batch, self.run = request, batch, Run.of(models, request)
        self.total = request.sampler.num_steps + 1
        self.keep = set(np.unique(np.linspace(0, self.total - 1, min(num_frames, self.total)).round()
                                  .astype(int)).tolist())
        self.frames: list[tuple] = []
        self.p_target: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []
        self.latest = None                   # the last Step (its tensors, not copied): what a preview shows
        self.states: list[torch.Tensor] = []
        self.started = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.run.done

    @property
    def steps_done(self) -> int:
        return self.run.trajectory.index

    def record(self, step) -> None:
        if step.sigma > 0:
            self.latest = step
        self.states.append(step.x.detach().cpu())                # a new tensor every step: kept, not copied
        self.p_target.append(step.p_target.cpu() if step.p_target is not None else
                             torch.full((len(step.x),), float("nan")))
        if step.sigma > 0:
            self.norms.append(step.guidance_norm.cpu())
        if step.index in self.keep:
            self.frames.append((step.index, step.sigma, pixels.noisy_to_uint8(step.x, step.sigma),
                                pixels.to_uint8(step.denoised)))


def preview(step) -> tuple[int, float, np.ndarray, np.ndarray]:
    """(step index, sigma, x0 estimate, x_t at unit scale) of a recorded Step, as (B, 28, 28) uint8: numpy only,
    so that a handler thread can call it without starting a second OpenMP team (compute.py)."""
    def u8(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((a.reshape(len(a), *a.shape[-2:]) + 1) * 127.5), 0, 255).astype(np.uint8)
    x0, xt = (t.detach().cpu().numpy() for t in (step.denoised, step.x))
    return step.index, step.sigma, u8(x0.clip(-1, 1)), u8(xt / (1 + step.sigma**2) ** 0.5)


def step_together(models: Models, recorders: Sequence[Recorder]) -> list:
    """One sampling step of every recorder (batched across all of them, whatever their noise levels); the
    Steps recorded."""
    steps = advance_together(models, [r.run for r in recorders], record=False)     # p(c|x): probe() on demand
    for recorder, step in zip(recorders, steps):
        recorder.record(step)
    return steps


def finish(models: Models, recorders: Sequence[Recorder]) -> list[FinishedRun]:
    """Finished recorders -> MethodRuns: final samples, evaluation-classifier verdicts and realism, in one
    batch for all of them. Nothing is recorded until every network call succeeded (a failed batch can be
    finished again, run by run)."""
    finals = finish_together(models, [r.run for r in recorders], record=False)
    samples = [step.x.cpu() for step in finals]
    probs, features = evaluate_images(models.eval_classifier, torch.cat(samples))
    realism = models.realism.distance_ratio(features).float()
    probs, features, realism = (t.split([len(x) for x in samples]) for t in (probs, features, realism))
    for recorder, step in zip(recorders, finals):
        recorder.record(step)
    now = time.perf_counter()
    runs = []
    for r, x, pr, ft, re in zip(recorders, samples, probs, features, realism):
        fr = r.frames
        runs.append(FinishedRun(r.request, x, pixels.to_uint8(x), pr, ft, re, np.array([f[0] for f in fr]),
                              np.array([f[1] for f in fr]), np.stack([f[2] for f in fr]),
                              np.stack([f[3] for f in fr]), torch.stack(r.p_target).numpy(),
                              torch.stack(r.norms).numpy() if r.norms else np.zeros((0, r.request.num_samples)),
                              r.batch, now - r.started, torch.stack(r.states).numpy()))
    return runs


@torch.inference_mode()
def probe(models: Models, runs: Sequence[FinishedRun], index: int) -> list[np.ndarray]:
    """p(target | x_t, sigma) of sample `index` at every recorded state of each run, from the noisy classifier
    (the trajectory plot's curve), read only where sampling did not already (one batch for all runs): the work
    of showing one followed sample, instead of a probe of every sample at every step. Returns the columns."""
    columns, asks = [run.p_target[:, index].copy() for run in runs], []
    for k, run in enumerate(runs):
        missing = np.flatnonzero(np.isnan(columns[k]))
        asks += [(k, step, run.states[step, index], run.state_sigmas()[step], run.request.label) for step in missing]
    if asks:
        x = torch.as_tensor(np.stack([a[2] for a in asks]), device=models.device)
        sigma = torch.tensor([a[3] for a in asks], dtype=x.dtype, device=models.device)
        label = torch.tensor([a[4] for a in asks], device=models.device)
        p = target_probability(classify(models.classifier, x, sigma, label, grad=False).probs, label).cpu().numpy()
        for (k, step, *_), value in zip(asks, p):
            columns[k][step] = value
    return columns


def run_methods_live(models: Models, requests: Sequence[Request], num_frames: int = NUM_FRAMES
                     ) -> Progress[list[FinishedRun]]:
    """Sample requests together in lockstep (one batched network call per round for all of them) and condense
    each. Yields (steps done, total) after every step; returns the runs."""
    batch = next(BATCH_IDS)
    recorders = [Recorder(models, r, batch, num_frames) for r in requests]
    total = max(r.total for r in recorders)
    while not all(r.done for r in recorders):
        step_together(models, [r for r in recorders if not r.done])
        yield max(r.steps_done for r in recorders), total
    runs = finish(models, recorders)
    yield total, total
    return runs


def run_methods(models: Models, requests: Sequence[Request], num_frames: int = NUM_FRAMES) -> list[FinishedRun]:
    return Live(run_methods_live(models, requests, num_frames)).run()
