"""The main denoiser's size study: `python -m demo.science.size_study [flops|train|evaluate|ship]`.

Issue 21 asks for a comparison at a quarter of today's FLOPs at equal quality. One lever is a cheaper main
denoiser (the other is fewer steps with a better solver: demo.science.solver_study). Every candidate is trained
exactly like the shipped one (train.JOBS['denoiser']: 6,000 it x 128, lr 1e-3, seed 1), and gets its own three
autoguidance guides from the recipes of the guide study (README "Autoguidance's guide: a study"; Karras et al.
2024: the guide is the same family, smaller and/or trained less):

    default          quarter of the channels, snapshot at 1/2 of the main training, EMA half-life 20% of it
    collapses_early  half the channels, a short run of its own (1/4 of the training, learning rate decayed to its
                     end), EMA half-life 10%
    mild             the main network itself after 1/16 of its training, EMA half-life 10% (a snapshot of the
                     candidate's own main run; the shipped mild guide came from a separate 1/4-length run)

so three runs per candidate: main (to the end; the mild snapshot on the way), quarter (stopped at 1/2 of its
schedule) and half (its own 1/4-length run). The shipped network is the candidate "current" (weights/, not
retrained). FLOPs per sample are counted with torch.utils.flop_counter (demo.science.flops).

    flops     FLOPs per sample of a dozen configurations and the candidates, and of a default comparison
    train     train the candidates (resumable, parallel workers; python -m demo.science.flop_study run does all)
    evaluate  the size study's evaluation (flop_study's plan, size part)
    ship      copy a candidate's denoiser and three guides into a weights folder under a suffix, with the study's
              numbers in their JSON (never weights/ unless --to says so)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from demo.engine import checkpoints
from demo.engine.config import GUIDES, RUNS_DIR, WEIGHTS_DIR, TrainConfig, UNetConfig
from demo.engine.networks import Denoiser
from demo.science import data, flops
from demo.science.train import JOBS, Job, denoiser_loss, train

MAIN = JOBS["denoiser"].train                   # 6000 it x 128, lr 1e-3, seed 1, EMA half-life 500
WORK = RUNS_DIR / "flop_study"                  # trained networks, results (git-ignored)
SEEDS = {"main": MAIN.seed, "quarter": 13, "half": 2}   # the seeds of the runs whose recipes these are


@dataclass(frozen=True)
class Candidate:
    """A main denoiser architecture; `name` suffixes its files (denoiser_<name>, weak_denoiser_<name>, ...)."""
    name: str
    unet: UNetConfig
    about: str

    def file(self, role: str) -> str:
        """The weight file of 'denoiser' or of a guide (config.GUIDES key)."""
        base = "denoiser" if role == "denoiser" else next(g.file for g in GUIDES if g.key == role)
        return base if self.name == "current" else f"{base}_{self.name}"


def scaled(unet: UNetConfig, divisor: int) -> UNetConfig:
    """The same family with 1/divisor of the channels and embedding width (the guide study's half and quarter)."""
    return replace(unet, channels=tuple(c // divisor for c in unet.channels), emb_dim=unet.emb_dim // divisor)


CURRENT = Candidate("current", UNetConfig(channels=(32, 64), emb_dim=128, patch=2), "the shipped main denoiser")
CANDIDATES = (
    CURRENT,
    Candidate("u24_48", UNetConfig(channels=(24, 48), emb_dim=96, patch=2), "3/4 of the channels"),
    Candidate("u48_96_p4", UNetConfig(channels=(48, 96), emb_dim=128, patch=4),
              "4x4 patches (7x7 and 3x3 levels), 3/2 of the channels"),
    Candidate("u20_40", UNetConfig(channels=(20, 40), emb_dim=80, patch=2), "5/8 of the channels"),
    Candidate("u16_32", UNetConfig(channels=(16, 32), emb_dim=64, patch=2), "half the channels"),
)
EXPLORED = ((32, 64, 2, 128), (32, 48, 2, 128), (28, 56, 2, 112), (24, 64, 2, 96), (24, 48, 2, 96), (16, 64, 2, 96),
            (16, 48, 2, 96), (20, 40, 2, 80), (24, 32, 2, 96), (16, 32, 2, 64), (16, 24, 2, 64), (64, 128, 4, 128),
            (48, 96, 4, 128), (40, 80, 4, 128), (32, 64, 4, 128))     # (channels..., patch, emb_dim) for `flops`


def candidate(name: str) -> Candidate:
    return next(c for c in CANDIDATES if c.name == name)


@dataclass(frozen=True)
class TrainingRun:
    """One training run of a candidate; `outputs` are (file, snapshot iteration, EMA half-life) written as the
    snapshots arrive, into folder/<name>/. It trains to `stop` of a learning-rate schedule of `iterations`."""
    name: str
    unet: UNetConfig
    iterations: int
    stop: int
    seed: int
    outputs: tuple[tuple[str, int, int], ...]
    batch_size: int = MAIN.batch_size

    def job(self) -> Job:
        return Job(lambda: Denoiser(self.unet), denoiser_loss,
                   TrainConfig(iterations=self.iterations, batch_size=self.batch_size, lr=MAIN.lr, seed=self.seed,
                               ema_halflife=self.outputs[-1][2], lr_warmup=min(MAIN.lr_warmup, self.iterations // 4)),
                   f"size-study run {self.name}")


def halflife(iterations: int, fraction: float) -> int:
    return max(1, round(iterations * fraction))


def training_runs(c: Candidate, main_iterations: int = MAIN.iterations, batch_size: int = MAIN.batch_size
                  ) -> tuple[TrainingRun, ...]:
    """The three runs of a candidate (none for the shipped one): see the module docstring."""
    if c.name == "current":
        return ()
    n, mild_at = main_iterations, main_iterations // 16
    return (TrainingRun(f"{c.name}-main", c.unet, n, n, SEEDS["main"],
                        ((c.file("mild"), mild_at, halflife(mild_at, 0.1)),
                         (c.file("denoiser"), n, MAIN.ema_halflife * n // MAIN.iterations)), batch_size),
            TrainingRun(f"{c.name}-quarter", scaled(c.unet, 4), n, n // 2, SEEDS["quarter"],
                        ((c.file("default"), n // 2, halflife(n // 2, 0.2)),), batch_size),
            TrainingRun(f"{c.name}-half", scaled(c.unet, 2), n // 4, n // 4, SEEDS["half"],
                        ((c.file("collapses_early"), n // 4, halflife(n // 4, 0.1)),), batch_size))


def locate(c: Candidate, role: str, work: Path = WORK) -> Path:
    """The folder holding a candidate's network (weights/ for the shipped one)."""
    if c.name == "current":
        return WEIGHTS_DIR
    return work / "networks" / next(r.name for r in training_runs(c) if any(f == c.file(role) for f, *_ in r.outputs))


def train_run(run: TrainingRun, device: torch.device, work: Path = WORK, progress: bool = True,
              note=lambda message: None) -> dict:
    """Train one run and write each output as its snapshot arrives (one folder per run: no shared manifest);
    `note` hears the speed once, at 1/8 of the run."""
    folder = work / "networks" / run.name
    halflives = tuple(h for _, _, h in run.outputs)
    ping = max(1, run.stop // 8)
    snapshots = (ping, *(s for _, s, _ in run.outputs))
    start, written = time.perf_counter(), {}
    for done, emas in train(run.job(), device, work / "state" / run.name / "state.pt", halflives, snapshots, progress):
        if done == ping:
            seconds = time.perf_counter() - start
            note(f"{done}/{run.stop} it in {seconds:.0f} s ({done / seconds:.0f} it/s, started {time.ctime()})")
        for file, snapshot, h in run.outputs:
            if snapshot == done:
                net = emas[h]
                info = {"about": f"size-study network {file} (run {run.name})",
                        "train": dataclasses.asdict(replace(run.job().train, ema_halflife=h)),
                        "snapshot_iteration": done, "device": str(device), "data": data.source(),
                        "reproducible": device.type == "cpu",
                        "train_seconds_to_snapshot": round(time.perf_counter() - start, 1),
                        "num_parameters": sum(p.numel() for p in net.parameters()),
                        "flops_per_sample": flops.per_sample(Denoiser(run.unet))}
                checkpoints.save(net, file, info, folder)
                written[file] = info
        if done >= run.stop:
            break
    return written


def costs(candidates: tuple[Candidate, ...], main_iterations: int = MAIN.iterations, batch_size: int = MAIN.batch_size
          ) -> tuple[dict[str, flops.ComparisonCost], dict[str, dict]]:
    """Per candidate: the FLOPs of a default comparison and of one call of each network (untrained networks of
    the same shapes: FLOPs do not depend on the weights), on the CPU of this process."""
    from demo.engine.pipeline import Models
    base = Models.load()
    costs, per_sample = {}, {}
    for c in candidates:
        runs = training_runs(c, main_iterations, batch_size)
        guide = Denoiser(scaled(c.unet, 4)).eval()
        costs[c.name] = flops.ComparisonCost.of(replace(base, net=Denoiser(c.unet).eval(), weak_net=guide))
        main = Denoiser(c.unet)
        per_sample[c.name] = {"denoiser_mflop": flops.per_sample(main) / 1e6,
                              "parameters": sum(p.numel() for p in main.parameters()),
                              "config": {"channels": list(c.unet.channels), "patch": c.unet.patch,
                                         "emb_dim": c.unet.emb_dim}, "about": c.about,
                              "guide_configs": {r.name: {"channels": list(r.unet.channels),
                                                         "emb_dim": r.unet.emb_dim} for r in runs}}
    return costs, per_sample


def cpu_ms_per_row(candidates: tuple[Candidate, ...], rows: int = 64, rounds: int = 5) -> dict[str, float]:
    """Indicative CPU cost of a denoiser call per row: best of `rounds` interleaved calls on `rows` rows with the
    threads this process has (FLOPs are not time: small channel counts run convolutions less efficiently).
    Speed claims belong to the bench (python -m demo.bench); this only ranks the candidates on one machine."""
    nets = {c.name: Denoiser(c.unet).eval() for c in candidates}
    x, label = torch.randn(rows, 1, 28, 28), torch.arange(rows) % 10
    best = dict.fromkeys(nets, float("inf"))
    with torch.inference_mode():
        for _ in range(rounds + 1):                       # the first round warms up
            for name, net in nets.items():
                began = time.perf_counter()
                net(x, 1.0, label)
                best[name] = min(best[name], (time.perf_counter() - began) * 1e3 / rows)
    return best


def done_files(run: TrainingRun, work: Path = WORK) -> bool:
    folder = work / "networks" / run.name
    return all((folder / f"{file}.json").exists() for file, *_ in run.outputs)


def explored_flops() -> list[dict]:
    base = flops.per_sample(Denoiser(CURRENT.unet))
    rows = []
    for *channels, patch, emb in EXPLORED:
        net = Denoiser(UNetConfig(channels=tuple(channels), patch=patch, emb_dim=emb))
        f = flops.per_sample(net)
        rows.append({"channels": channels, "patch": patch, "emb_dim": emb, "mflop_per_sample": f / 1e6,
                     "ratio": f / base, "parameters": sum(p.numel() for p in net.parameters())})
    return rows


def ship(name: str, setting: str, results: Path, to: Path, suffix: str, work: Path = WORK) -> None:
    """Copy candidate `name`'s denoiser and three guides to `to` as denoiser<suffix> and <guide file><suffix>,
    with the study's numbers at solver setting `setting` (e.g. 'dpmpp_3m:12') in their JSON: the denoiser gets
    its FLOPs and every method's summary, each guide a "study" block shaped like the guide study's (findings
    .guide_range reads it)."""
    c, study = candidate(name), json.loads(results.read_text())
    numbers = study["candidates"][name]
    measured = numbers["settings"][setting]
    plan = study["plan"]
    settings = {"setting": setting, "weights": plan["guide_weights"], "seeds": plan["grid_seeds"],
                "samples_per_seed": plan["per_class"] * 10, "device": study["device"]}
    for role in ("denoiser", *(g.key for g in GUIDES)):
        folder = locate(c, role, work)
        info = {k: v for k, v in checkpoints.load_info(c.file(role), folder).items()
                if k not in ("architecture", "config")}
        base = "denoiser" if role == "denoiser" else next(g.file for g in GUIDES if g.key == role)
        if role == "denoiser":
            info["size_study"] = {"candidate": name, "setting": setting, "gflop_per_comparison": measured["gflop"],
                                  "mflop_per_sample": numbers["denoiser_mflop"], "holds": measured["holds"],
                                  "methods": measured["methods"], "settings": settings}
        else:
            info |= {"guide": role, "about": f"autoguidance guide {role!r} of the size-study candidate {name}: "
                                             f"{c.file(role)} ({info.get('about', '')})",
                     "study": {"candidate": c.file(role), **measured["guides"].get(role, {}), "settings": settings}}
        info["reproduce"] = ("python -m demo.science.flop_study run, then python -m demo.science.size_study ship "
                             f"--candidate {name} --setting {setting}")
        checkpoints.save(checkpoints.load(c.file(role), folder), base + suffix, info, to)
        print(f"{name} {role}: {folder / c.file(role)} -> {to / (base + suffix)}.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("flops", "train", "evaluate", "ship"))
    parser.add_argument("--candidate", help="ship: the candidate to ship")
    parser.add_argument("--setting", help="ship: whose numbers go into the JSON, e.g. dpmpp_3m:12")
    parser.add_argument("--results", type=Path, help="ship: size_study.json (default: WORK/results/)")
    parser.add_argument("--to", type=Path, help="ship: the weights folder to write (required; weights/ only if named)")
    parser.add_argument("--suffix", default="_fast", help="ship: file name suffix (denoiser_fast, ...)")
    parser.add_argument("--work", type=Path, default=WORK, help="the study's work folder (networks/, results/)")
    args, rest = parser.parse_known_args()
    args.results = args.results or args.work / "results" / "size_study.json"
    if args.stage == "flops":
        for r in explored_flops():
            print(f"{str(tuple(r['channels'])):<10} patch {r['patch']} emb {r['emb_dim']:>3}: "
                  f"{r['mflop_per_sample']:5.1f} MFLOP/sample ({r['ratio']:.2f}x), {r['parameters']:>7} parameters")
    elif args.stage == "ship":
        if not (args.candidate and args.setting and args.to):
            parser.error("ship needs --candidate, --setting and --to")
        ship(args.candidate, args.setting, args.results, args.to, args.suffix, args.work)
    else:
        from demo.science import flop_study
        flop_study.main(["run", "--parts", "train" if args.stage == "train" else "size", "--work", str(args.work),
                         *rest])


if __name__ == "__main__":
    main()
