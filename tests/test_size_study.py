"""The size study's recipes, FLOPs and bookkeeping, and the FLOP study's plan and report (fast parts)."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch

from demo.engine import checkpoints
from demo.engine.config import WEIGHTS_DIR, UNetConfig
from demo.engine.networks import Denoiser
from demo.science import flop_report, flop_study, flops
from demo.science import size_study as size


@pytest.fixture()
def one_thread():
    """Tiny convolutions run slower on two contended threads than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_each_candidate_gets_the_guide_studys_three_recipes():
    c = size.candidate("u24_48")
    main, quarter, half = size.training_runs(c)
    assert (main.unet, main.iterations, main.stop, main.seed) == (c.unet, 6000, 6000, 1)      # like JOBS["denoiser"]
    assert main.outputs == (("guide_mild_u24_48", 375, 38), ("denoiser_u24_48", 6000, 500))   # 1/16, EMA 10%
    assert quarter.unet == UNetConfig(channels=(6, 12), emb_dim=24) and quarter.seed == 13
    assert (quarter.iterations, quarter.stop, quarter.outputs) == (6000, 3000, (("weak_denoiser_u24_48", 3000, 600),))
    assert half.unet == UNetConfig(channels=(12, 24), emb_dim=48) and half.seed == 2
    assert (half.iterations, half.stop, half.outputs) == (1500, 1500, (("guide_collapses_early_u24_48", 1500, 150),))
    assert size.training_runs(size.CURRENT) == ()                                 # the shipped one is not retrained
    assert size.CURRENT.file("denoiser") == "denoiser" and size.locate(size.CURRENT, "mild") == WEIGHTS_DIR
    assert size.locate(c, "collapses_early", Path("w")) == Path("w/networks/u24_48-half")


def test_candidates_span_a_quarter_to_two_thirds_of_todays_flops():
    today = flops.per_sample(Denoiser(size.CURRENT.unet))
    assert today == 48_449_536                                      # the 48.4 MFLOP per sample
    ratios = [flops.per_sample(Denoiser(c.unet)) / today for c in size.CANDIDATES[1:]]
    assert min(ratios) == pytest.approx(0.25, abs=0.02) and max(ratios) < 0.6 and len(ratios) >= 4


def test_comparison_flops_are_counted_exactly(models, one_thread):
    """One sample at 2 and 3 steps, scaled, gives exactly what a full 8-sample comparison counts."""
    cost = flops.ComparisonCost.of(models)
    for record in (False, True):
        assert flops.count_comparison(models, 4, record) == round(cost.gflop(4, record) * 1e9)
    assert cost.gflop(32, record=True) > 118        # today's default: ~118 GFLOP in the issue, here with the probe


def test_a_training_run_writes_its_snapshots(tmp_path, one_thread):
    main = size.training_runs(size.candidate("u16_32"), main_iterations=32, batch_size=8)[0]
    notes = []
    written = size.train_run(main, torch.device("cpu"), tmp_path, progress=False, note=notes.append)
    assert set(written) == {"guide_mild_u16_32", "denoiser_u16_32"} and size.done_files(main, tmp_path)
    assert written["guide_mild_u16_32"]["snapshot_iteration"] == 2 and written["denoiser_u16_32"]["train"][
        "ema_halflife"] == 2 and written["denoiser_u16_32"]["reproducible"] and len(notes) == 1
    folder = tmp_path / "networks" / main.name
    mild, final = (checkpoints.load(f, folder) for f in ("guide_mild_u16_32", "denoiser_u16_32"))
    assert not torch.equal(mild.out_norm.weight, final.out_norm.weight)


def plan_costs(plan):
    cost = flops.ComparisonCost(per_step=10**9, fixed=0, per_step_recorded=10**9, fixed_recorded=0)
    return {c.name: cost for c in plan.candidates}


def test_the_plan_trains_first_and_waits_for_its_networks(tmp_path):
    plan = flop_study.QUICK
    todo = flop_study.tasks(plan, {"train", "solver", "size"}, plan_costs(plan), tmp_path, set())
    keys = [t.key for t in todo]
    assert len(keys) == len(set(keys))
    trainings = [t for t in todo if isinstance(t.payload, flop_study.Train)]
    assert len(trainings) == 3 and todo[:3] == trainings
    for t in todo[3:]:
        m = t.payload
        assert bool(t.needs) == (m.net != "current")
        if m.net != "current":
            assert "train:u16_32-main" in t.needs
            assert ("train:u16_32-quarter" in t.needs) == (m.method in ("autoguidance", "gfcg_ag") and
                                                           m.guide == "default")
    settings = {t.payload.setting for t in todo[3:]}
    assert settings == {"ddim:6", "ddim:3", "dpmpp_3m:3"}
    done = {t.key for t in todo[3:10]}
    assert len(flop_study.tasks(plan, {"train", "solver", "size"}, plan_costs(plan), tmp_path, done)) == len(todo) - 7


def test_budget_steps_are_the_most_that_fit():
    cost = flops.ComparisonCost(per_step=2 * 10**9, fixed=10**9, per_step_recorded=0, fixed_recorded=0)
    assert flop_study.budget_steps(flop_study.Plan(), cost) == 12            # 25 GFLOP at 12, 33 at 16
    cost = flops.ComparisonCost(per_step=10 * 10**9, fixed=0, per_step_recorded=0, fixed_recorded=0)
    assert flop_study.budget_steps(flop_study.Plan(), cost) == 8             # nothing fits: the fewest


def point(w, fid, sd=0.02):
    return {"w": w, "fid": fid, "fid_sd": sd, "accuracy": 0.9, "accuracy_sd": 0.01, "recall": 0.8}


def test_default_w_is_the_smallest_within_noise_of_the_best():
    rows = [point(0, 1.0), point(0.25, 0.7), point(0.5, 0.45), point(1, 0.42), point(2, 0.5), point(3, 0.9)]
    s = flop_report.curve_summary(rows)
    assert (s["best_w"], s["default_w"]) == (1, 0.5) and s["fid_w3_over_best"] == pytest.approx(0.9 / 0.42)
    assert s["fid_doubles_at_w"] == pytest.approx(2 + (0.84 - 0.5) / (0.9 - 0.5))


def test_the_tar_keeps_results_and_main_networks_first(tmp_path, monkeypatch):
    for name, kb in [("results/summary.txt", 1), ("networks/a-main/denoiser_a.safetensors", 40),
                     ("networks/a-main/guide_mild_a.safetensors", 40), ("networks/a-quarter/weak_denoiser_a.json", 1)]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * kb * 1024)
    monkeypatch.setattr(flop_report, "TAR_LIMIT", 60 * 1024)
    with tarfile.open(flop_report.pack(tmp_path, tmp_path / "out" / "t.tar.gz")) as tar:
        names = tar.getnames()
    assert names == ["results/summary.txt", "networks/a-main/denoiser_a.safetensors",
                     "networks/a-quarter/weak_denoiser_a.json"]                  # the mild guide did not fit
