"""All hyperparameters, as frozen dataclasses with documented defaults.

The UI reads slider ranges from LIMITS, so the engine and the widgets never disagree. Each guidance method's
own facts (title, colour, default w, cost) are class attributes of its class in guidance.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]     # the repository: app.py, assets/, weights/
ASSETS_DIR = ROOT / "assets"                   # stored measurements, plots, screenshots, the app's CSS
WEIGHTS_DIR = ROOT / "weights"                 # the shipped networks (safetensors + JSON + MANIFEST.json)
RUNS_DIR = ROOT / "runs"                       # training state (resumable; not committed)

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES            # extra "no class" token of the denoiser, used by classifier-free guidance
IMAGE_SHAPE = (1, 28, 28)           # (C, H, W) of one digit
CLASS_NAMES = tuple(f"digit {k}" for k in range(NUM_CLASSES))
SIGMA_DATA = 0.5                    # std of the data in [-1, 1] pixel units (EDM, Karras et al. 2022)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0  # the noise levels sampled (EDM's range): every schedule, limit and text reads these
BUDGET = 8.0                        # what one request may cost, in default comparisons (or default 2-D runs);
                                    # operators change it with --budget


@dataclass(frozen=True)
class UNetConfig:
    """Class-conditional U-Net behind EDM preconditioning: D(x, sigma, label)."""
    channels: tuple[int, ...] = (32, 64)       # feature channels per level (28/patch, then halved per level)
    emb_dim: int = 128                         # noise-level + class embedding width
    patch: int = 2                             # p x p pixel blocks -> channels first (space-to-depth)
    num_classes: int = NUM_CLASSES             # the embedding has one more row: NULL_LABEL
    dropout: float = 0.0
    sigma_data: float = SIGMA_DATA


@dataclass(frozen=True)
class ClassifierConfig:
    """Noisy classifier p(label | x, sigma): the encoder half of the U-Net plus a linear head."""
    channels: tuple[int, ...] = (32, 64)
    emb_dim: int = 128
    patch: int = 2
    num_classes: int = NUM_CLASSES
    sigma_data: float = SIGMA_DATA


@dataclass(frozen=True)
class EvalClassifierConfig:
    """Clean-data CNN used only for metrics (a different architecture from the guiding classifier)."""
    channels: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128                     # penultimate features: the space of "FID (classifier features)"
    dropout: float = 0.3
    num_classes: int = NUM_CLASSES


@dataclass(frozen=True)
class SamplerConfig:
    """Noise levels and solver; Karras et al. (2022) Eq. 5 discretisation of [sigma_min, sigma_max]."""
    num_steps: int = 32                # denoiser evaluations per sample without guidance (1..1000)
    sampler: str = "ddim"              # "ddim" (deterministic, Euler on the PF-ODE) or "ancestral"
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    rho: float = 7.0
    clip_denoised: bool = True         # clamp the guided x0 estimate to the data range [-1, 1]


@dataclass(frozen=True)
class Limits:
    """Accepted request ranges, checked once (validation.checked) for every request."""
    max_weight: float = 10.0          # the sliders' range too: the API and the UI accept the same w
    max_steps: int = 1000
    max_samples: int = 64
    max_seed: int = 2**31 - 1
    sigma_max: float = SIGMA_MAX
    max_toy_points: int = 5000            # the 2-D lab


LIMITS = Limits()


@dataclass(frozen=True)
class Interval:
    """Guidance interval (Kynkaanniemi et al. 2024): guide only for sigma_lo < sigma <= sigma_hi."""
    sigma_lo: float = 0.0
    sigma_hi: float = math.inf

    def contains(self, sigma: float) -> bool:
        return self.sigma_lo < sigma <= self.sigma_hi


@dataclass(frozen=True)
class Preset:
    """A named choice of steps and guidance interval for the app; the first of PRESETS is its default, and what
    "a default comparison" (the budget's unit) means. Each has its stored evaluation (assets/<evaluation>)."""
    key: str
    label: str
    sampler: SamplerConfig
    interval: Interval
    evaluation: str


PRESETS = (   # the FLOP study (python -m demo.science.flop_study; README): 10 steps and the interval tie 32 steps
    Preset("fast", "Fast: 10 DDIM steps, guidance for 0.2 < σ ≤ 10", SamplerConfig(num_steps=10),
           Interval(0.2, 10.0), "evaluation.json"),
    Preset("classic", "Classic: 32 DDIM steps, guidance at every step", SamplerConfig(num_steps=32), Interval(),
           "evaluation_classic.json"),
)


@dataclass(frozen=True)
class Guide:
    """An autoguidance guide the app offers (Request.guide = key): weights/<file>.safetensors, from the guide
    study (python -m demo.science.guide_study); `label` names it in the UI and `lesson` says what choosing it shows."""
    key: str
    file: str
    label: str
    lesson: str


GUIDES = (    # how each was made; what each does is measured (the evaluation's rows; How it works quotes them)
    Guide("default", "weak_denoiser", "Recommended",
          "the guide study's best: a quarter of the channels (1/14 of the parameters), half of the main model's "
          "training, EMA half-life 20% of it"),
    Guide("collapses_early", "guide_collapses_early", "Collapses early",
          "half the channels in a short run of its own (1/4 of the training, learning rate decayed to its end; "
          "the guide shipped before the study)"),
    Guide("mild", "guide_mild", "Early snapshot",
          "the main network itself after 1/16 of its training: far weaker everywhere (with 32 steps a mild, "
          "broad push; with the fast preset's 10 steps it overshoots first)"),
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run; `python -m demo.train` reproduces the shipped weights from these values."""
    iterations: int
    batch_size: int = 128
    lr: float = 2e-3
    lr_warmup: int = 200
    ema_halflife: int = 500              # EMA half-life in iterations (EDM2-style power EMA is overkill here)
    p_mean: float = -1.2                 # log-normal training noise levels (EDM Eq. in Table 1)
    p_std: float = 1.2
    p_uncond: float = 0.15               # label dropout for classifier-free guidance
    seed: int = 0
    checkpoint_every: int = 500          # resumable: state saved to runs/<name>/state.pt
