"""Screenshots of the running app at a projector's, a laptop's and a phone's size:
`python -m demo.tools.screenshots [--url http://127.0.0.1:7860] [--out assets]`.

Without --url it starts `python app.py` on a free port and stops it afterwards. Needs Playwright and Debian's
chromium (as the browser tests do). The copies under assets/ are updated only by running this command.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from demo.engine.config import ROOT

SIZES = {"1024x768": (1024, 768), "1440x900": (1440, 900), "390x844": (390, 844)}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def running_app(timeout: float = 180):
    """`python app.py` on a free loopback port; yields its URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT,
                               env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the app did not start") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def shoot(url: str, out: Path, sizes: dict[str, tuple[int, int]] = SIZES) -> list[Path]:
    """One screenshot per size, once the comparison and its trajectory have arrived; returns the files."""
    from playwright.sync_api import sync_playwright
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        for name, (width, height) in sizes.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="domcontentloaded")
            page.locator("#comparison .gl-cell img").first.wait_for(timeout=120_000)
            page.locator("#filmstrip .gl-frame img").first.wait_for(timeout=120_000)
            page.wait_for_timeout(500)
            path = out / f"screenshot_{name}.png"
            page.screenshot(path=str(path))
            paths.append(path)
            page.close()
        browser.close()
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a running app (default: start one)")
    parser.add_argument("--out", type=Path, default=ROOT / "assets")
    args = parser.parse_args()
    if args.url:
        paths = shoot(args.url, args.out)
    else:
        with running_app() as url:
            paths = shoot(url, args.out)
    for path in paths:
        print("wrote", path)


if __name__ == "__main__":
    main()
