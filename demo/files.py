"""Output files the app hands to Gradio: finished, content-addressed PNG/GIF files written atomically.

Gradio's own cache rewrites an existing file in place when it is given a PIL image, so a client still
downloading that file could read it half-written under concurrent load; a file named by its content hash and
renamed into place is never rewritten.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image


def save_file(data: bytes, folder: Path, name: str) -> str:
    """Write data to folder/<content hash>/name atomically (temp file + rename) once, and return the path."""
    path = Path(folder) / hashlib.sha256(data).hexdigest()[:32] / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(staging, path)
    return str(path)


def save_png(image: Image.Image, folder: Path, name: str = "image.png") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return save_file(buffer.getvalue(), folder, name)
