"""Screenshots of the running app at a projector's, a laptop's and a phone's size:
`python -m demo.tools.screenshots [--url http://127.0.0.1:7860] [--out assets]`.

Without --url it starts `python app.py` on a free port (demo/tools/launcher.py) and stops it afterwards. Needs Playwright and Debian's
chromium (as the browser tests do). The copies under assets/ are updated only by running this command.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from demo.engine.config import ROOT
from demo.tools.launcher import launch_app

SIZES = {"1024x768": (1024, 768), "1440x900": (1440, 900), "390x844": (390, 844)}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


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
            page.locator("#comparison .gl-comparison[data-key] .gl-cell img").first.wait_for(timeout=120_000)
            page.locator("#filmstrip .gl-frame img").first.wait_for(timeout=120_000)
            page.wait_for_timeout(500)
            path = out / f"screenshot_{name}.png"
            page.screenshot(path=str(path))
            paths.append(path)
            page.close()
        browser.close()
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.tools.screenshots", description=__doc__)
    parser.add_argument("--url", help="a running app (default: start one)")
    parser.add_argument("--out", type=Path, default=ROOT / "assets")
    args = parser.parse_args(argv)
    if args.url:
        paths = shoot(args.url, args.out)
    else:
        with launch_app() as (url, _):
            paths = shoot(url, args.out)
    for path in paths:
        print("wrote", path)


if __name__ == "__main__":
    main()
