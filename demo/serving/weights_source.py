"""Weights on the Hugging Face Hub (optional; the local weights/ folder is the default).

    GUIDANCE_LAB_WEIGHTS=hf://owner/repo[@revision]    (or --weights)

downloads the repo once into the Hugging Face cache (later starts use the cache and make no request) and then
verifies every file against the repo's MANIFEST.json, as the local folder is. If the user set HF_HUB_OFFLINE
(settings.user_offline), only the cache is used: nothing is looked up. `python -m demo.tools.publish` uploads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from demo.engine.checkpoints import verify_folder

PREFIX = "hf://"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
CARD = "README.md"                                     # the model card, uploaded with the weights


class HubError(RuntimeError):
    """A hub address that is malformed or cannot be fetched; the message is one line."""


@dataclass(frozen=True)
class HubWeights:
    repo_id: str
    revision: str | None = None                        # a branch, tag or commit; None: the default branch

    @property
    def address(self) -> str:
        return PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse(spec: str) -> HubWeights:
    """hf://owner/repo[@revision] -> HubWeights."""
    body = spec[len(PREFIX):]
    repo_id, at, revision = body.partition("@")
    if not REPO_ID.match(repo_id) or (at and not revision):
        raise HubError(f"weights address {spec!r} is not hf://owner/repo or hf://owner/repo@revision")
    return HubWeights(repo_id, revision or None)


def download(repo_id: str, revision: str | None, local_files_only: bool) -> str:
    """huggingface_hub.snapshot_download into the HF cache (tests replace this function: no network)."""
    from huggingface_hub import constants, snapshot_download
    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline and local_files_only     # app.py's default offline; an hf:// address asks
    try:
        return snapshot_download(repo_id=repo_id, revision=revision, local_files_only=local_files_only)
    finally:
        constants.HF_HUB_OFFLINE = offline


def fetch(weights: HubWeights, offline: bool = False) -> Path:
    """The local snapshot folder of `weights`, from the cache if it is there, else downloaded (not `offline`)."""
    try:
        return Path(download(weights.repo_id, weights.revision, local_files_only=True))
    except Exception:                                  # not cached yet (huggingface_hub's error types vary)
        if offline:
            raise HubError(f"{weights.address} is not in the Hugging Face cache, and HF_HUB_OFFLINE is set: "
                           f"staying offline (unset HF_HUB_OFFLINE to download it once)") from None
    try:
        return Path(download(weights.repo_id, weights.revision, local_files_only=False))
    except Exception as error:
        detail = " ".join(str(error).split())[:160]
        raise HubError(f"cannot download {weights.address}: {type(error).__name__}: {detail}") from None


def resolve(spec: str, default: Path, offline: bool = False) -> Path:
    """The weights folder named by a setting: '' -> default, hf://... -> a verified snapshot (from the cache only
    if `offline`), else a path."""
    if not spec:
        return default
    if spec.startswith(PREFIX):
        folder = fetch(parse(spec), offline)
        verify_folder(folder)
        return folder
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise HubError(f"weights folder {folder} does not exist (GUIDANCE_LAB_WEIGHTS / --weights)")
    return folder
