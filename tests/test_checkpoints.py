"""Weights: safetensors + JSON + sha256 manifest; clear errors for missing or corrupt files."""
from __future__ import annotations

import json

import pytest
import torch

from demo.engine import checkpoints
from demo.engine.checkpoints import CheckpointError
from demo.engine.config import GUIDES, UNetConfig
from demo.engine.networks import Denoiser


@pytest.fixture()
def folder(tmp_path):
    torch.manual_seed(0)
    net = Denoiser(UNetConfig(channels=(8, 16), emb_dim=16))
    checkpoints.save(net, "tiny", {"about": "test"}, tmp_path)
    return tmp_path


def test_round_trip_is_exact(folder):
    torch.manual_seed(0)
    original = Denoiser(UNetConfig(channels=(8, 16), emb_dim=16))
    loaded = checkpoints.load("tiny", folder)
    assert loaded.config == original.config
    for (k, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_manifest_lists_every_file_with_its_hash(folder):
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert set(manifest) == {"tiny.json", "tiny.safetensors"}
    assert manifest["tiny.safetensors"] == checkpoints.sha256(folder / "tiny.safetensors")


def test_corrupt_file_is_refused_with_the_file_name_and_the_fix(folder):
    path = folder / "tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors is corrupt.*python -m demo\.train"):
        checkpoints.load("tiny", folder)


def test_missing_file_is_refused(folder):
    (folder / "tiny.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors is missing.*git checkout"):
        checkpoints.load("tiny", folder)


def test_missing_manifest_is_refused(folder):
    (folder / "MANIFEST.json").unlink()
    with pytest.raises(CheckpointError, match="MANIFEST.json is missing"):
        checkpoints.load("tiny", folder)


def test_config_that_does_not_match_the_tensors_is_refused(folder):
    meta = json.loads((folder / "tiny.json").read_text())
    meta["config"]["channels"] = [8, 32]
    (folder / "tiny.json").write_text(json.dumps(meta))
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    manifest["tiny.json"] = checkpoints.sha256(folder / "tiny.json")
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match its config"):
        checkpoints.load("tiny", folder)


def test_shipped_weights_are_all_listed_and_verified():
    manifest = json.loads((checkpoints.WEIGHTS_DIR / "MANIFEST.json").read_text())
    for name in ("denoiser", "classifier", "eval_classifier", *(g.file for g in GUIDES)):
        assert f"{name}.safetensors" in manifest and f"{name}.json" in manifest
        assert checkpoints.load_info(name)["architecture"]
    assert not list(checkpoints.WEIGHTS_DIR.glob("*.pt")) and not list(checkpoints.WEIGHTS_DIR.glob("*.pkl"))


def test_every_guide_is_a_degraded_member_of_the_main_family():
    """Karras et al. 2024: the guide is the same kind of model with less capacity and/or less training."""
    main = checkpoints.load_info("denoiser")
    for guide in GUIDES:
        weak = checkpoints.load_info(guide.file)
        assert weak["architecture"] == main["architecture"]
        iterations = weak.get("snapshot_iteration", weak["train"]["iterations"])
        assert weak["num_parameters"] < main["num_parameters"] / 2 or iterations <= main["train"]["iterations"] / 4
