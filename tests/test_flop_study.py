"""The FLOP study's one command end to end, in --quick mode on the CPU, as the GPU run will be made: digits from
an exported .npz, worker processes, results as they arrive, one tar, the summary on stdout; and a deadline that
leaves no time still gives a whole tar and a summary."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from demo.science import data

ROOT = Path(__file__).resolve().parent.parent


def study(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    npz = tmp_path / "mnist.npz"
    if not npz.exists():
        data.export(npz)
    return subprocess.run([sys.executable, "-m", "demo.science.flop_study", "run", "--quick", "--device", "cpu",
                           "--workers", "2", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
                           "--data", str(npz), *extra], cwd=ROOT, check=True, timeout=600, capture_output=True,
                          text=True)


@pytest.mark.slow
def test_quick_study_trains_evaluates_and_packs_one_tar(tmp_path):
    out = study(tmp_path, "--deadline-seconds", "400")
    tar_path = tmp_path / "out" / "flop_study.tar.gz"
    assert tar_path.stat().st_size < 16 * 2**20
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
        size = json.load(tar.extractfile("results/size_study.json"))
        trainings = json.load(tar.extractfile("results/trainings.json"))
    for name in ("solver_study.json", "summary.txt", "runs.jsonl", "size_study.png", "solver_study.png",
                 "size_study_guides.png"):
        assert f"results/{name}" in names
    for file in ("u16_32-main/denoiser_u16_32", "u16_32-main/guide_mild_u16_32", "u16_32-quarter/weak_denoiser_u16_32",
                 "u16_32-half/guide_collapses_early_u16_32"):
        assert f"networks/{file}.safetensors" in names and f"networks/{file}.json" in names
    assert set(trainings) == {"u16_32-main", "u16_32-quarter", "u16_32-half"}
    for run in trainings.values():                       # the workers read the digits from the .npz
        assert all(info["data"] == str(tmp_path / "mnist.npz") for info in run["files"].values())
    assert size["reproducible"] and set(size["candidates"]) == {"current", "u16_32"}
    fast = size["candidates"]["u16_32"]
    assert 0.2 < fast["denoiser_mflop"] / size["candidates"]["current"]["denoiser_mflop"] < 0.3
    settings = fast["settings"]["dpmpp_3m:3"]
    assert set(settings["methods"]) == {"classifier", "cfg", "gfcg", "autoguidance", "gfcg_ag"}
    assert set(settings["guides"]) == {"default", "collapses_early", "mild"}
    assert set(size["candidates"]["current"]["settings"]) == {"dpmpp_3m:3", "ddim:6"}
    assert len(size["reference"]["points"]) == 3                    # the quick plan's operating points
    assert "Operating points" in out.stdout and "u16_32" in out.stdout.split("Operating points")[1]
    assert "failed 0" in out.stdout

    again = study(tmp_path, "--deadline-seconds", "400")             # resumes: nothing left to do
    assert "0 tasks (0 trainings)" in again.stdout and f"{len(size['reference']['points'])}" in again.stdout


@pytest.mark.slow
def test_a_deadline_that_leaves_no_time_still_gives_a_tar_and_a_summary(tmp_path):
    out = study(tmp_path, "--deadline-seconds", "1")
    with tarfile.open(tmp_path / "out" / "flop_study.tar.gz") as tar:
        size = json.load(tar.extractfile("results/size_study.json"))
    assert size["reference"]["points"] == {} and "FLOP study on cpu" in out.stdout
    assert "not started" in out.stdout
