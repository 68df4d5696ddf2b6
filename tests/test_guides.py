"""The guide study: the family's snapshots and EMAs, the study's summary numbers, and the shipped guides."""
from __future__ import annotations

import pytest
import torch

from demo.engine import checkpoints
from demo.engine.config import GUIDES, UNetConfig
from demo.science import guide_study as guides


def test_a_run_writes_every_snapshot_at_every_ema_length(monkeypatch, tmp_path):
    monkeypatch.setattr(guides, "GUIDE_RUNS", tmp_path)
    run = guides.GuideRun("tiny", UNetConfig(channels=(8, 16), emb_dim=32), 40, (20, 40), 0, "a tiny run")
    guides.train_family(torch.device("cpu"), (run,))
    names = sorted(p.stem for p in (tmp_path / "snapshots").glob("*.json") if p.stem != "MANIFEST")
    assert names == sorted(guides.guide_name(run, s, f) for s in (20, 40) for f in guides.EMA_FRACTIONS)
    weights = {}
    for s in (20, 40):
        for f in guides.EMA_FRACTIONS:
            name = guides.guide_name(run, s, f)
            info = checkpoints.load_info(name, tmp_path / "snapshots")
            assert info["snapshot_iteration"] == s and info["train"]["ema_halflife"] == guides.halflife(s, f)
            weights[name] = checkpoints.load(name, tmp_path / "snapshots").out_norm.weight.clone()
    assert len({tuple(w.tolist()) for w in weights.values()}) == len(weights)   # every EMA is its own average


def row(w, fid, recall=0.8, accuracy=0.9):
    return {"w": w, guides.FID: fid, guides.FID + "_sd": 0.01, "recall": recall, "accuracy": accuracy}


def test_summary_finds_the_best_w_and_where_fid_doubles():
    result = {"name": "g", "num_parameters": 10, "iterations": 5, "ema_halflife": 1,
              "rows": [row(0.5, 0.3), row(1.0, 0.2), row(2.0, 0.3), row(3.0, 0.6), row(5.0, 2.0)]}
    s = guides.summary(result, row(0.0, 0.5))
    assert s["best_w"] == 1.0 and s["best_fid"] == 0.2
    assert s["fid_w3_over_best"] == pytest.approx(3.0)
    assert s["fid_doubles_at_w"] == pytest.approx(2.0 + (0.4 - 0.3) / (0.6 - 0.3))   # interpolated, FID = 0.4


def test_shipped_guides_carry_their_study_metrics():
    for guide in GUIDES:
        info = checkpoints.load_info(guide.file)
        study = info["study"]
        assert info["guide"] == guide.key and study["best_fid"] > 0 and "fid_doubles_at_w" in study
        assert study["candidate"] in info["about"]
    assert len({checkpoints.load_info(g.file)["study"]["candidate"] for g in GUIDES}) == len(GUIDES)
