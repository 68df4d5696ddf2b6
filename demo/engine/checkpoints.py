"""Weights on disk: weights/<name>.safetensors (plain tensors, no pickle) + <name>.json (config and how it was
trained) + MANIFEST.json (sha256 of every file). Loading verifies the hash before reading a byte of tensors.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from demo.engine.config import (
    WEIGHTS_DIR,
    ClassifierConfig,
    EvalClassifierConfig,
    UNetConfig,
)
from demo.engine.networks import Denoiser, EvalClassifier, NoisyClassifier

MANIFEST = "MANIFEST.json"
RESTORE_HINT = "restore it with `git checkout -- weights/` or retrain with `python -m demo.train`"

# name -> (network class, config class)
ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "Denoiser": (Denoiser, UNetConfig),
    "NoisyClassifier": (NoisyClassifier, ClassifierConfig),
    "EvalClassifier": (EvalClassifier, EvalClassifierConfig),
}


class CheckpointError(RuntimeError):
    """A weight file is missing, corrupt or inconsistent; the message names the file and the fix."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save(net: nn.Module, name: str, info: dict, folder: Path = WEIGHTS_DIR) -> None:
    """Write <name>.safetensors and <name>.json, then refresh the manifest entries of both."""
    meta = {"architecture": type(net).__name__, "config": dataclasses.asdict(net.config), **info}
    save_tensors(net.state_dict(), name, meta, folder)


def save_tensors(tensors: dict[str, torch.Tensor], name: str, meta: dict, folder: Path = WEIGHTS_DIR) -> None:
    """Plain tensors as <name>.safetensors with <name>.json, listed in the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, folder / f"{name}.safetensors")
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for file in (f"{name}.safetensors", f"{name}.json"):
        manifest[file] = sha256(folder / file)
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")


def read_manifest(folder: Path) -> dict[str, str]:
    """file name -> sha256, from folder/MANIFEST.json (CheckpointError naming it if missing or unreadable)."""
    manifest_path = Path(folder) / MANIFEST
    if not manifest_path.exists():
        raise CheckpointError(f"{manifest_path} is missing; {RESTORE_HINT}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, OSError) as error:                  # UnicodeDecodeError and JSONDecodeError included
        raise CheckpointError(f"{manifest_path} is corrupt ({error}); {RESTORE_HINT}") from None
    if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
        raise CheckpointError(f"{manifest_path} is corrupt (not a JSON object of file -> sha256); {RESTORE_HINT}")
    return manifest


def verify_folder(folder: Path) -> list[str]:
    """Check every file the manifest lists against its sha256; the files checked (first failure raises)."""
    manifest = read_manifest(folder)
    for file in sorted(manifest):
        _verified(Path(folder), file, manifest)
    return sorted(manifest)


def _verified(folder: Path, file: str, manifest: dict[str, str] | None = None) -> Path:
    path = folder / file
    manifest_path = folder / MANIFEST
    expected = (manifest if manifest is not None else read_manifest(folder)).get(file)
    if expected is None:
        raise CheckpointError(f"{file} is not listed in {manifest_path}; {RESTORE_HINT}")
    if not path.exists():
        raise CheckpointError(f"weight file {path} is missing; {RESTORE_HINT}")
    if sha256(path) != expected:
        raise CheckpointError(f"weight file {path} is corrupt (sha256 mismatch with {MANIFEST}); {RESTORE_HINT}")
    return path


def load_info(name: str, folder: Path = WEIGHTS_DIR) -> dict:
    """The verified JSON metadata of a checkpoint."""
    return json.loads(_verified(folder, f"{name}.json").read_text())


def load_tensors(name: str, folder: Path = WEIGHTS_DIR) -> dict[str, torch.Tensor]:
    """The verified tensors of <name>.safetensors (on the CPU)."""
    load_info(name, folder)                                  # its JSON must be listed and intact too
    return load_file(_verified(folder, f"{name}.safetensors"))


def load(name: str, folder: Path = WEIGHTS_DIR, device: str | torch.device = "cpu") -> nn.Module:
    """Build the network from its JSON config and load its verified safetensors (strict), in eval mode."""
    meta = load_info(name, folder)
    net_class, config_class = ARCHITECTURES[meta["architecture"]]
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
    net = net_class(config_class(**config))
    state = load_file(_verified(folder, f"{name}.safetensors"))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{folder / name}.safetensors does not match its config: {error}") from error
    return net.to(device).eval().requires_grad_(False)
