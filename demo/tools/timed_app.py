"""`python app.py` with the bench's clock (demo/tools/timing.py) in the app's own process:
`GUIDANCE_LAB_TIMING=<file> python -m demo.tools.timed_app [app.py's flags]`.

The clock's snapshot is written to <file> every WRITE_EVERY seconds (replaced whole, never half-written); the
bench reads it before and after a class (launcher.launch_app(timing=<file>) starts the app this way). This
variable is read here only: app.py is run unchanged (runpy, as `python app.py` would run it).
"""
from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path

from demo.engine.config import ROOT

TIMING_ENV = "GUIDANCE_LAB_TIMING"
WRITE_EVERY = 0.2            # seconds


def write(clock, path: Path) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(clock.snapshot()))
    os.replace(part, path)


def keep_writing(clock, path: Path) -> None:
    while True:
        write(clock, path)
        time.sleep(WRITE_EVERY)


def main() -> None:
    import torch

    from demo.tools.timing import Clock
    path = Path(os.environ[TIMING_ENV])
    clock = Clock(sync=torch.cuda.is_available())      # CUDA: network calls wait for their kernels
    with clock.installed():
        write(clock, path)
        threading.Thread(target=keep_writing, args=(clock, path), daemon=True, name="bench-clock").start()
        sys.argv = [str(ROOT / "app.py"), *sys.argv[1:]]
        runpy.run_path(str(ROOT / "app.py"), run_name="__main__")


def read(path: Path, settle: float = 2 * WRITE_EVERY + 0.1) -> dict:
    """The app's clock as last written, after `settle` seconds (so that it includes what just finished)."""
    time.sleep(settle)
    return json.loads(path.read_text())


if __name__ == "__main__":
    main()
