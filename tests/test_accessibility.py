"""Every student can use it: the method colours stay apart under deuteranopia, and axe-core finds no violation
on any tab (keyboard: the tiles are buttons that follow a sample on Enter)."""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from demo.engine.guidance import GUIDANCE, METHODS

# Machado, Oliveira & Fernandes (2009): deuteranopia at severity 1, on linear RGB.
DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                         [-0.011820, 0.042940, 0.968881]])


def linear_rgb(colour: str) -> np.ndarray:
    c = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def cie_lab(rgb: np.ndarray) -> np.ndarray:
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_method_colours_stay_distinct_under_deuteranopia():
    seen = {m: cie_lab(np.clip(DEUTERANOPIA @ linear_rgb(GUIDANCE[m].colour), 0, 1)) for m in METHODS}
    for a, b in itertools.combinations(METHODS, 2):
        assert np.linalg.norm(seen[a] - seen[b]) > 15, (a, b)          # CIE76 distance: clearly different


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TABS = {"compare": "#filmstrip .gl-frame img", "sweep": "#sweep .gl-frame img", "lab": "#toy-plot img",
        "lessons": ".gl-lesson", "how": "#header h1"}


@pytest.mark.slow
def test_no_axe_violation_on_any_tab_and_the_grid_works_from_the_keyboard(server):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    pytest.importorskip("axe_playwright_python")
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    from demo.tools.screenshots import CHROMIUM_ARGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for tab, ready in TABS.items():
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            page.goto(f"{server}/?tab={tab}", wait_until="domcontentloaded")
            page.locator(ready).first.wait_for(timeout=180_000)
            page.wait_for_timeout(500)
            violations = Axe().run(page).response["violations"]
            assert not violations, [(v["id"], [n["target"] for n in v["nodes"][:3]]) for v in violations]
            if tab == "compare":                    # Tab to a tile, Enter: that sample is followed
                cell = page.locator('#comparison .gl-row[data-method="cfg"] .gl-cell[data-sample="4"]')
                cell.focus()
                assert page.evaluate("() => document.activeElement.dataset.sample") == "4"
                page.keyboard.press("Enter")
                page.locator('#comparison .gl-cell.gl-selected[data-sample="4"]').first.wait_for(timeout=30_000)
                page.wait_for_function("() => location.search.includes('follow=4')", timeout=60_000)
            page.close()
        browser.close()
