"""Samples the lessons follow, found by measurement: `python -m demo.science.lesson_samples [--out FILE]`.

Two lessons point at one sample of one comparison (the app's default preset: its steps and guidance interval, a
digit and a seed):
  fooled     classifier guidance at w = FOOLED_W: the guiding classifier's p(c|x) at the end is high (>= 0.9)
             while the separate evaluation classifier does not read the digit as c, or finds it unrealistic
  switches   gradient-free guidance at its default w: the reference class c_ref = argmax_{k != c} p(k|x_t, sigma)
             changes during sampling (GFCG pushes away from whichever class the sample is most confused with)
The search walks digits and seeds in a fixed order and writes the first of each (with the numbers the lessons
quote) to assets/lesson_samples.json; tests/test_lessons.py re-samples them and checks the properties hold.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from demo.engine.config import ASSETS_DIR, NUM_CLASSES, PRESETS, Preset
from demo.engine.guidance import GUIDANCE
from demo.engine.metrics import evaluate_images
from demo.engine.pipeline import Models, Request, generate

OUT = ASSETS_DIR / "lesson_samples.json"
FOOLED_W = 5.0
SEEDS = range(0, 40)


def trajectory(models: Models, request: Request) -> tuple[list, torch.Tensor]:
    """The run's Steps and the classifier's p(. | x_t, sigma) at every step, (N, B, K)."""
    steps = list(generate(models, request))
    with torch.inference_mode():
        probs = torch.stack([models.classifier(s.x, s.sigma).softmax(1) for s in steps[:-1]])
    return steps, probs


def read(models: Models, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation classifier: (predicted class, its probability) and realism (distance ratio <= 1) per sample."""
    probs, features = evaluate_images(models.eval_classifier, samples.cpu())
    return probs, models.realism.distance_ratio(features) <= 1


def fooled(models: Models, label: int, seed: int, preset: Preset) -> dict | None:
    request = Request(label=label, method="classifier", weight=FOOLED_W, seed=seed, sampler=preset.sampler,
                      interval=preset.interval)
    steps = list(generate(models, request))
    p_guide = steps[-1].p_target                          # the guiding classifier at sigma_min, per sample
    probs, realistic = read(models, steps[-1].x)
    for k in range(request.num_samples):
        predicted = int(probs[k].argmax())
        if p_guide[k] >= 0.9 and (predicted != label or not realistic[k]):
            return {"label": label, "seed": seed, "sample": k, "w": FOOLED_W,
                    "guide_p_final": round(float(p_guide[k]), 3), "eval_reads": predicted,
                    "eval_p_label": round(float(probs[k, label]), 3), "realistic": bool(realistic[k]),
                    "guide_p_by_step": [round(float(s.p_target[k]), 3) for s in steps]}
    return None


def switches(models: Models, label: int, seed: int, preset: Preset, weight: float) -> dict | None:
    request = Request(label=label, method="gfcg", weight=weight, seed=seed, sampler=preset.sampler,
                      interval=preset.interval)
    steps, probs = trajectory(models, request)
    others = probs.clone()
    others[..., label] = -1
    reference = others.argmax(-1)                         # (N, B): c_ref at every step
    active = [i for i, s in enumerate(steps[:-1]) if request.interval.contains(s.sigma)]   # where GFCG guides
    for k in range(request.num_samples):
        sequence = [reference[i, k].item() for i in active]
        changes = [active[i] for i in range(1, len(sequence)) if sequence[i] != sequence[i - 1]]
        final = float(probs[-1, k, label])
        if changes and final >= 0.9 and sequence[0] != sequence[-1]:
            return {"label": label, "seed": seed, "sample": k, "w": weight, "guided_steps": active,
                    "reference_by_step": reference[:, k].tolist(), "first_switch_step": changes[0],
                    "from_class": sequence[0], "to_class": sequence[-1],
                    "p_label_by_step": [round(float(p), 3) for p in probs[:, k, label]]}
    return None


def search(models: Models, preset: Preset, gfcg_w: float) -> dict:
    found: dict = {}
    for seed in SEEDS:
        for label in range(NUM_CLASSES):
            if "fooled" not in found and (hit := fooled(models, label, seed, preset)):
                found["fooled"] = hit
            if "switches" not in found and (hit := switches(models, label, seed, preset, gfcg_w)):
                found["switches"] = hit
            if len(found) == 2:
                return found
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from demo.science import findings
    preset = PRESETS[0]
    found = search(Models.load(), preset, findings.default_weight("gfcg"))
    found["settings"] = {"preset": preset.key, "num_steps": preset.sampler.num_steps,
                         "sampler": preset.sampler.sampler, "num_samples": 8,
                         "interval": [preset.interval.sigma_lo, preset.interval.sigma_hi],
                         "methods": {m: GUIDANCE[m].title for m in ("classifier", "gfcg")}}
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if not kk.endswith("by_step")} for k, v in found.items()
                      if k != "settings"}, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
