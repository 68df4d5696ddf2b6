"""Train every shipped network and write weights/: `python -m demo.train [--only NAME ...] [--device cuda]`.

Seeded and resumable (state in runs/<name>/state.pt every `checkpoint_every` iterations; rerunning continues).
The three jobs reproduce the shipped weights; their configs below are the single source of truth. The autoguidance
guides (weak_denoiser, guide_*) come from the guide study: `python -m demo.science.guide_study train|evaluate|ship`.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from demo.engine import checkpoints
from demo.engine.config import (
    NULL_LABEL,
    RUNS_DIR,
    ClassifierConfig,
    EvalClassifierConfig,
    TrainConfig,
    UNetConfig,
)
from demo.engine.networks import Denoiser, EvalClassifier, NoisyClassifier
from demo.engine.noise import training_sigmas
from demo.science.data import load_mnist


def denoiser_loss(net: Denoiser, y: Tensor, label: Tensor, cfg: TrainConfig, gen: torch.Generator) -> Tensor:
    """EDM loss (Karras et al. 2022, Eq. 2 with lambda of Table 1) with label dropout p_uncond for CFG."""
    sigma = training_sigmas(len(y), cfg.p_mean, cfg.p_std, gen)
    drop = torch.rand(len(y), generator=gen, device=gen.device) < cfg.p_uncond
    label = torch.where(drop, torch.full_like(label, NULL_LABEL), label)
    x = y + sigma.view(-1, 1, 1, 1) * torch.randn(y.shape, generator=gen, device=gen.device)
    weight = (sigma**2 + net.config.sigma_data**2) / (sigma * net.config.sigma_data) ** 2
    return (weight.view(-1, 1, 1, 1) * (net(x, sigma, label) - y) ** 2).mean()


def classifier_loss(net: NoisyClassifier, y: Tensor, label: Tensor, cfg: TrainConfig,
                    gen: torch.Generator) -> Tensor:
    """Cross-entropy of p(label | x, sigma) on noised digits (Dhariwal & Nichol 2021, Sec. 4)."""
    sigma = training_sigmas(len(y), cfg.p_mean, cfg.p_std, gen)
    x = y + sigma.view(-1, 1, 1, 1) * torch.randn(y.shape, generator=gen, device=gen.device)
    return F.cross_entropy(net(x, sigma), label)


def random_affine(y: Tensor, gen: torch.Generator, degrees: float = 12, shift: float = 0.1,
                  scale: float = 0.1) -> Tensor:
    """Small random rotation / scale / translation (data augmentation for the evaluation classifier)."""
    n = len(y)
    angle = (torch.rand(n, generator=gen, device=gen.device) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, generator=gen, device=gen.device) * 2 - 1) * scale
    t = (torch.rand(n, 2, generator=gen, device=gen.device) * 2 - 1) * shift * 2
    cos, sin = angle.cos() / s, angle.sin() / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(y.shape), align_corners=False)
    return F.grid_sample(y + 1, grid, align_corners=False, padding_mode="zeros") - 1


def eval_classifier_loss(net: EvalClassifier, y: Tensor, label: Tensor, cfg: TrainConfig,
                         gen: torch.Generator) -> Tensor:
    return F.cross_entropy(net(random_affine(y, gen)), label, label_smoothing=0.05)


@dataclass(frozen=True)
class Job:
    build: Callable[[], nn.Module]
    loss: Callable[..., Tensor]
    train: TrainConfig
    about: str


JOBS: dict[str, Job] = {
    "denoiser": Job(lambda: Denoiser(UNetConfig(channels=(32, 64), patch=2)), denoiser_loss,
                    TrainConfig(iterations=6000, batch_size=128, lr=1e-3, seed=1),
                    "main class-conditional denoiser D(x, sigma, label)"),
    "classifier": Job(lambda: NoisyClassifier(ClassifierConfig(channels=(32, 64), patch=2)), classifier_loss,
                      TrainConfig(iterations=2000, batch_size=128, lr=1e-3, p_std=1.8, seed=3),
                      "noisy classifier p(label | x, sigma) for classifier guidance and GFCG"),
    "eval_classifier": Job(lambda: EvalClassifier(EvalClassifierConfig()), eval_classifier_loss,
                           TrainConfig(iterations=1500, batch_size=128, lr=2e-3, ema_halflife=100, seed=4),
                           "clean-data evaluation classifier, metrics only"),
}


def learning_rate(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    warm = min(1.0, (it + 1) / cfg.lr_warmup)
    return cfg.lr * warm * (0.55 + 0.45 * math.cos(math.pi * it / cfg.iterations))


@torch.no_grad()
def test_accuracy(net: nn.Module, device: torch.device, sigma: float | None = None) -> float:
    x, label = load_mnist("test")
    x, label = x.to(device), label.to(device)
    logits = net(x) if sigma is None else net(x + sigma * torch.randn_like(x), sigma)
    return (logits.argmax(1) == label).float().mean().item()


class EMAs:
    """Exponential moving averages of the weights, one per half-life h (in iterations): beta = 0.5 ** (1 / h).
    Updated with one multi-tensor op per EMA over every float tensor (torch._foreach_*: a few kernels on a GPU, not
    one per tensor), computed as ema * beta + p * (1 - beta) exactly as the per-tensor form; integer buffers
    (e.g. BatchNorm's counter) are copied."""

    def __init__(self, net: nn.Module, halflives: tuple[int, ...]):
        self.nets = {h: copy.deepcopy(net).eval().requires_grad_(False) for h in halflives}
        self.betas = {h: 0.5 ** (1 / h) for h in halflives}
        self.source = self._split(net)
        self.targets = {h: self._split(ema) for h, ema in self.nets.items()}

    @staticmethod
    def _split(net: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        tensors = list(net.state_dict().values())     # views of the live storage (load_state_dict copies in)
        return [t for t in tensors if t.is_floating_point()], [t for t in tensors if not t.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        floats, others = self.source
        for h, (ema_floats, ema_others) in self.targets.items():
            torch._foreach_mul_(ema_floats, self.betas[h])
            torch._foreach_add_(ema_floats, torch._foreach_mul(floats, 1 - self.betas[h]))
            for target, value in zip(ema_others, others):
                target.copy_(value)


LOG_EVERY = 100                 # iterations between loss read-outs (.item() waits for the GPU)


def train(job: Job, device: torch.device, state_path: Path, halflives: tuple[int, ...] = (),
          snapshots: tuple[int, ...] = (), progress: bool = True) -> Iterator[tuple[int, dict[int, nn.Module]]]:
    """Train `job` (resumable from state_path), keeping one EMA of the weights per half-life (job's own first).
    Yields (iteration, {half-life: EMA network}) at each snapshot iteration and at the end.

    The training digits live on `device` and every random draw (data order, noise levels, noise, label dropout)
    comes from one generator there: on the CPU the run is reproducible bit for bit (tests/test_train.py); on a
    GPU the kernels are not deterministic, so neither is the run."""
    cfg = job.train
    halflives = tuple(dict.fromkeys((cfg.ema_halflife, *halflives)))
    torch.manual_seed(cfg.seed)                        # parameter initialisation only
    net = job.build().to(device)
    emas = EMAs(net, halflives)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    gen = torch.Generator(device).manual_seed(cfg.seed)
    start = 0
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        net.load_state_dict(state["net"]), opt.load_state_dict(state["opt"])
        for h, ema in emas.nets.items():
            ema.load_state_dict(state["emas"][str(h)])
        gen.set_state(state["gen"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())  # dropout
        start = state["iteration"]
    y_all, label_all = (t.to(device) for t in load_mnist("train"))
    net.train()
    bar = tqdm(range(start, cfg.iterations), desc=state_path.parent.name, initial=start, total=cfg.iterations,
               disable=not progress)
    for it in bar:
        idx = torch.randint(len(y_all), (cfg.batch_size,), generator=gen, device=device)
        loss = job.loss(net, y_all[idx], label_all[idx], cfg, gen)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        emas.update()
        done = it + 1
        if progress and (done % LOG_EVERY == 0 or done == cfg.iterations):
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if done % cfg.checkpoint_every == 0 and done < cfg.iterations:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"net": net.state_dict(), "emas": {str(h): e.state_dict() for h, e in emas.nets.items()},
                        "opt": opt.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "iteration": done}, state_path)
        if done in snapshots or done == cfg.iterations:
            yield done, emas.nets


def run(name: str, device: torch.device, out: Path) -> None:
    job = JOBS[name]
    t0 = time.perf_counter()
    *_, (_, emas) = train(job, device, RUNS_DIR / name / "state.pt")
    ema = emas[job.train.ema_halflife]
    info = {"about": job.about, "train": dataclasses.asdict(job.train), "device": str(device),
            "train_seconds_last_session": round(time.perf_counter() - t0, 1),
            "num_parameters": sum(p.numel() for p in ema.parameters())}
    if isinstance(ema, EvalClassifier):
        info["test_accuracy"] = test_accuracy(ema.to(device), device)
    if isinstance(ema, NoisyClassifier):
        info["test_accuracy_by_sigma"] = {s: test_accuracy(ema, device, s) for s in (0.01, 0.5, 1.0, 2.0, 5.0)}
    checkpoints.save(ema, name, info, out)
    print(name, {k: v for k, v in info.items() if "accuracy" in k})


def write_real_reference(out: Path) -> None:
    """The real digits' side of the per-sample realism flag (metrics.Realism): evaluation-classifier features of
    the 500 held-out digits and their k-NN radii, so the app needs no data set at run time."""
    from demo.engine.metrics import REALISM_K, Realism, evaluate_images
    eval_classifier = checkpoints.load("eval_classifier", out)
    images, labels = load_mnist("test")
    _, features = evaluate_images(eval_classifier, images)
    realism = Realism.of(features)
    checkpoints.save_tensors({"features": features, "radii": realism.radii.float(), "labels": labels},
                             REAL_REFERENCE, {"about": "evaluation-classifier features of the 500 held-out MNIST "
                                              "digits and their k-NN radii (per-sample realism flag)",
                                              "k": REALISM_K, "eval_classifier_sha256":
                                              checkpoints.sha256(out / "eval_classifier.safetensors")}, out)
    print(REAL_REFERENCE, f"{len(features)} digits, k = {REALISM_K}")


REAL_REFERENCE = "real_reference"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=list(JOBS), help="train only these (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=checkpoints.WEIGHTS_DIR)
    args = parser.parse_args()
    for name in args.only or JOBS:
        run(name, torch.device(args.device), args.out)
    if not args.only or "eval_classifier" in args.only:
        write_real_reference(args.out)


if __name__ == "__main__":
    main()
