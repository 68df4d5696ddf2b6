"""Training is seeded and resumable: the same run twice, or resumed half-way, gives the same tensors."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from demo.science import train


@pytest.fixture()
def tiny_jobs(monkeypatch, tmp_path):
    jobs = {name: dataclasses.replace(job, train=dataclasses.replace(job.train, iterations=6, checkpoint_every=3,
                                                                       batch_size=16, lr_warmup=2))
            for name, job in train.JOBS.items()}
    monkeypatch.setattr(train, "JOBS", jobs)
    monkeypatch.setattr(train, "RUNS_DIR", tmp_path / "runs")
    return tmp_path


@pytest.mark.parametrize("name", ["denoiser", "classifier", "eval_classifier"])
def test_training_is_reproducible_and_resumable(tiny_jobs, name):
    cpu = torch.device("cpu")
    train.run(name, cpu, tiny_jobs / "a")                      # leaves runs/<name>/state.pt at iteration 3
    (tiny_jobs / "runs" / name / "state.pt").unlink()
    train.run(name, cpu, tiny_jobs / "b")                      # from scratch again
    train.run(name, cpu, tiny_jobs / "c")                      # resumes from the state saved at iteration 3
    a, b, c = (load_file(tiny_jobs / d / f"{name}.safetensors") for d in "abc")
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.equal(a[key], c[key]), key


def test_runs_folder_does_not_depend_on_the_working_directory():
    from demo.engine import checkpoints
    assert train.RUNS_DIR.is_absolute() and train.RUNS_DIR.parent == checkpoints.WEIGHTS_DIR.parent
