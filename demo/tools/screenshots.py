"""Screenshots of the running app at a projector's, a laptop's and a phone's size:
`python -m demo.tools.screenshots [--url http://127.0.0.1:7860] [--out assets] [--all]`.

The Compare tab, finished (screenshot_<size>.png, the README's picture); with --all also the Compare tab while a
comparison forms (a fresh seed at 60 steps, taken once the forming picture shows), the w sweep, the 2-D lab and the Lessons
tab (screenshot_<view>_<size>.png): the views to look at before calling a UI change done.

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


FINISHED = "#comparison .gl-comparison[data-key] .gl-cell img"
VIEWS = {   # name: (link, what shows that the view is there)
    "": ("", FINISHED),
    # 60 steps: long enough (a few seconds) that the shot is still mid-run; at the default 10 steps the comparison
    # could finish before it was taken
    "forming": ("?seed={seed}&num_steps=60", "#comparison .gl-comparison[data-forming] .gl-cell img"),
    "sweep": ("?tab=sweep", "#sweep .gl-frame img"),
    "lab": ("?tab=lab", "#toy-plot img"),
    "lessons": ("?tab=lessons", ".gl-lesson"),
}


def shoot(url: str, out: Path, sizes: dict[str, tuple[int, int]] = SIZES, views: tuple[str, ...] = ("",)
          ) -> list[Path]:
    """One screenshot per size and view, once the view has arrived; returns the files."""
    from playwright.sync_api import sync_playwright
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        for k, (name, (width, height)) in enumerate(sizes.items()):
            for view in views:
                link, ready = VIEWS[view]
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url.rstrip("/") + "/" + link.format(seed=90_000 + k), wait_until="domcontentloaded")
                page.locator(ready).first.wait_for(timeout=180_000)
                if view == "":
                    page.locator("#filmstrip .gl-frame img").first.wait_for(timeout=120_000)
                page.wait_for_timeout(300 if view == "forming" else 800)
                path = out / f"screenshot_{view + '_' if view else ''}{name}.png"
                page.screenshot(path=str(path))
                paths.append(path)
                page.close()
        browser.close()
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.tools.screenshots", description=__doc__)
    parser.add_argument("--url", help="a running app (default: start one)")
    parser.add_argument("--out", type=Path, default=ROOT / "assets")
    parser.add_argument("--all", action="store_true", help="every view (forming, sweep, lab, lessons) too")
    args = parser.parse_args(argv)
    views = tuple(VIEWS) if args.all else ("",)
    if args.url:
        paths = shoot(args.url, args.out, views=views)
    else:
        with launch_app() as (url, _):
            paths = shoot(url, args.out, views=views)
    for path in paths:
        print("wrote", path)


if __name__ == "__main__":
    main()
