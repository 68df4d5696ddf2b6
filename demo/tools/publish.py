"""python -m demo.tools.publish --repo owner/name [--yes]: put the verified weights on the Hugging Face Hub.

Dry run by default: prints the exact upload (repo, files, sizes, sha256) and uploads nothing. With --yes it
creates the model repo if needed and uploads those files in one commit (log in first: `huggingface-cli login`
or HF_TOKEN). The app then loads them with GUIDANCE_LAB_WEIGHTS=hf://owner/name.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from demo.engine.checkpoints import MANIFEST, CheckpointError, sha256, verify_folder
from demo.engine.config import WEIGHTS_DIR
from demo.serving import weights_source as hub
from demo.serving.weights_source import CARD


@dataclass(frozen=True)
class UploadFile:
    name: str
    size: int
    sha256: str


def upload_plan(folder: Path) -> list[UploadFile]:
    """What this command uploads: every verified manifest file, the manifest and the model card."""
    folder = Path(folder)
    names = [*verify_folder(folder), MANIFEST] + ([CARD] if (folder / CARD).is_file() else [])
    return [UploadFile(name, (folder / name).stat().st_size, sha256(folder / name)) for name in sorted(names)]


def upload(repo_id: str, folder: Path, files: list[UploadFile], private: bool) -> str:
    """Create the model repo if needed and upload exactly `files` in one commit; the commit URL."""
    from huggingface_hub import create_repo, upload_folder
    create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                         allow_patterns=[f.name for f in files], commit_message="Guidance Lab weights")
    return str(getattr(info, "commit_url", info))


def size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.tools.publish", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="owner/name of the model repo on the Hub")
    parser.add_argument("--folder", type=Path, default=WEIGHTS_DIR, help="weights folder (default: weights/)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--yes", action="store_true", help="upload (without it: a dry run)")
    args = parser.parse_args(argv)
    try:
        repo = hub.parse(hub.PREFIX + args.repo)
        if repo.revision:
            raise hub.HubError("--repo takes owner/name (uploads go to the default branch)")
        files = upload_plan(args.folder)
    except (hub.HubError, CheckpointError) as error:
        print(f"publish: {error}", file=sys.stderr)
        return 1
    print(f"Upload to the Hugging Face Hub, model repo {repo.repo_id} (https://huggingface.co/{repo.repo_id}), "
          f"default branch, one commit, from {args.folder}:")
    width = max(len(f.name) for f in files)
    for f in files:
        print(f"  {f.name:<{width}}  {size(f.size):>9}  sha256 {f.sha256}")
    print(f"  {len(files)} files, {size(sum(f.size for f in files))}; weights load with "
          f"GUIDANCE_LAB_WEIGHTS=hf://{repo.repo_id}")
    if not args.yes:
        print("Dry run: nothing was uploaded. Add --yes to upload.")
        return 0
    try:
        url = upload(repo.repo_id, args.folder, files, private=args.private)
    except Exception as error:                       # auth, network, permissions: one line
        print(f"publish: upload failed: {type(error).__name__}: {' '.join(str(error).split())[:200]}",
              file=sys.stderr)
        return 1
    print(f"Uploaded: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
