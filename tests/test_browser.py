"""The app over HTTP and in a real browser: named API parameters (gradio_client), one aligned picture on
arrival at every screen size, the w ladder, following a digit."""
from __future__ import annotations

import shutil

import pytest

from demo.engine.guidance import METHODS
from demo.ui.form import COMPARE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server, verbose=False)


def test_the_api_takes_named_parameters_with_defaults(client):
    """Client.predict(label=..., seed=..., api_name="/compare"): every other parameter takes its default."""
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/compare"]
    assert [p["parameter_name"] for p in info["parameters"]] == [n for n in COMPARE.names if n != "follow"]
    assert all(p["parameter_has_default"] for p in info["parameters"])
    picture, summary, status, download = client.predict(label=7, seed=12, num_steps=4, num_samples=3,
                                                        api_name="/compare")
    assert picture.count("data-sample=") == len(METHODS) * 3 and "digit 7" in status and "seed 12" in status
    assert download.endswith(".png")
    _, summary, status, _ = client.predict(label=7, seed=12, num_steps=4, num_samples=3, w_cfg=5.0,
                                           api_name="/compare")           # a method's own w, by name
    assert "| Classifier-free | 5 |" in summary
    filmstrip, gif, _ = client.predict(label=7, seed=12, num_steps=4, num_samples=3, api_name="/trajectory")
    assert "gl-frame" in filmstrip and gif.endswith(".gif")


def test_a_bad_value_over_http_is_one_line_naming_the_field(client):
    with pytest.raises(Exception, match=r"Seed \(seed\) must be a whole number, got 1.5"):
        client.predict(seed=1.5, num_steps=4, num_samples=2, api_name="/compare")
    with pytest.raises(Exception, match=r"high sigma must be a number >= the low sigma"):
        client.predict(sigma_lo=5.0, sigma_hi=1.0, num_steps=4, num_samples=2, api_name="/compare")
    assert "data-sample" in client.predict(num_steps=4, num_samples=2, api_name="/compare")[0]   # still healthy


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZES = {"projector": (1024, 768), "laptop": (1440, 900), "phone": (390, 844)}


def open_page(browser, server, size):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(server, wait_until="domcontentloaded")
    page.locator("#comparison .gl-comparison[data-key] .gl-cell img").first.wait_for(timeout=120_000)     # no click needed
    return page


def runs_computed(page) -> int:
    return int(page.locator("#comparison .gl-comparison").get_attribute("data-runs-computed"))


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    from demo.tools.screenshots import CHROMIUM_ARGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_browser_shows_a_finished_comparison_on_arrival_and_nothing_is_clipped(server, browser, size, tmp_path):
    width, height = SIZES[size]
    page = open_page(browser, server, (width, height))
    assert page.locator("#comparison .gl-cell").count() == len(METHODS) * 8
    boxes = page.evaluate("""() => [...document.querySelectorAll('#comparison .gl-cell img, #comparison .gl-name')]
        .map((el) => { const r = el.getBoundingClientRect(), c = el.closest('.gl-row').getBoundingClientRect();
                       return [r.left, r.right, r.top, r.bottom, c.left, c.right, c.top, c.bottom, r.width]; })""")
    for left, right, top, bottom, c_left, c_right, c_top, c_bottom, w in boxes:
        assert w > 0 and left >= c_left - 1 and right <= c_right + 1 and top >= c_top - 1 and bottom <= c_bottom + 1
        assert 0 <= left and right <= width                                # inside the viewport's width
    names = page.locator("#comparison .gl-name").evaluate_all("els => els.map(e => getComputedStyle(e).fontSize)")
    assert all(float(px[:-2]) >= 14 for px in names)                       # method names readable from afar
    if size == "projector":                                                 # the whole result above the fold
        picture = page.locator("#comparison .gl-comparison").bounding_box()
        generate = page.locator("#generate").bounding_box()
        assert picture["y"] + picture["height"] <= height and generate["y"] + generate["height"] <= height
    page.screenshot(path=str(tmp_path / f"{size}.png"))
    page.close()


def test_browser_ladder_w_change_samples_nothing_and_a_click_follows_a_digit(server, browser):
    page = open_page(browser, server, SIZES["projector"])
    page.locator("#ladder-status").get_by_text("ready").wait_for(timeout=300_000)
    box = page.locator("#weight-cfg input[type=number]")
    counts = []
    for w in ("1.5", "2"):                                                 # two ladder values, one after another
        box.fill(w)
        box.press("Enter")
        page.locator(f'#comparison .gl-label:has-text("w = {w} ·")').first.wait_for(timeout=30_000)
        counts.append(runs_computed(page))
    assert counts[0] == counts[1]                                          # from the ladder: no new sampling
    strip = page.locator("#filmstrip .gl-frame img").first
    strip.wait_for(timeout=120_000)
    first_frames = page.locator("#filmstrip").inner_html()
    page.locator('#comparison .gl-cell[data-sample="5"]').first.click()
    page.wait_for_function("(old) => document.querySelector('#filmstrip').innerHTML !== old", arg=first_frames,
                           timeout=60_000)
    assert page.locator('#comparison .gl-cell.gl-selected[data-sample="5"]').count() >= 1
    page.close()


def test_a_link_restores_its_comparison_on_arrival(server, browser):
    """digit 7, CFG at w = 5, seed 12, following sample 3, ancestral sampler: the state, the picture and the
    trajectory panel, as the link says; a bad value is one line and keeps its default."""
    link = f"{server}/?label=7&w_cfg=5&seed=12&follow=2&num_samples=4&num_steps=6&sampler=ancestral&sigma_hi=40"
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    page.goto(link, wait_until="domcontentloaded")
    page.locator("#comparison .gl-comparison[data-key] .gl-cell img").first.wait_for(timeout=120_000)
    assert page.locator("#digit input:checked").get_attribute("value") == "7"
    assert page.locator("#weight-cfg input[type=number]").input_value() == "5"
    assert page.locator("#comparison .gl-row[data-method='cfg']").get_attribute("data-w") == "5"
    key = page.locator("#comparison .gl-comparison").get_attribute("data-key")
    assert key.startswith(f"7|12|4|6|ancestral|{COMPARE['sigma_lo'].default:g}|40|")   # label, seed, samples, ...
    assert page.locator('#comparison .gl-cell.gl-selected[data-sample="2"]').count() == 6   # followed, each row
    page.locator("#filmstrip .gl-frame img").first.wait_for(timeout=120_000)
    assert "sample 1, Classifier-free guidance, w = 5: read as" in page.locator(
        "#comparison .gl-row[data-method='cfg'] .gl-cell img").first.get_attribute("alt")
    assert "label=7" in page.url and "w_cfg=5" in page.url and "follow=2" in page.url
    assert page.locator("#link-note").inner_text().strip() == ""
    page.goto(f"{server}/?seed=abc&tab=nowhere&colour=red", wait_until="domcontentloaded")
    page.locator("#comparison .gl-comparison[data-key] .gl-cell img").first.wait_for(timeout=120_000)
    note = page.locator("#link-note").inner_text()
    assert "Seed (seed) must be a number, got 'abc'" in note and "tab must be one of" in note
    assert "'colour' is not a setting" in note and "\n" not in note.strip()
    page.close()


def test_the_ladder_answers_a_w_change_in_the_page_without_a_request(server, browser):
    page = open_page(browser, server, SIZES["projector"])
    page.locator("#ladder-status").get_by_text("ready").wait_for(timeout=300_000)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    times = []
    for w in ("1.5", "3", "0.5", "2.5"):
        ms = page.evaluate("""(w) => new Promise((done) => {
            const box = document.querySelector('#weight-cfg input[type=number]');
            const start = performance.now();
            box.value = w; box.dispatchEvent(new Event('input', {bubbles: true}));
            const row = () => document.querySelector("#comparison .gl-row[data-method='cfg']");
            const check = () => row().dataset.w === w ? done(performance.now() - start) : requestAnimationFrame(check);
            check(); })""", w)
        times.append(ms)
        assert f"w = {w} ·" in page.locator("#comparison .gl-row[data-method='cfg'] .gl-meta").inner_text()
    assert not [u for u in requests if "/gradio_api/" in u]                 # no request while scrubbing
    assert sorted(times)[len(times) // 2] <= 50                            # median, input to picture (ms)
    assert "w_cfg=2.5" in page.url
    page.close()


def test_the_page_s_own_quick_events_reach_the_server(server, browser):
    """Events without the queue (the w mode, the speed preset) go through the request guard's run/predict."""
    page = open_page(browser, server, SIZES["projector"])
    page.get_by_text("same w for all").click()
    page.locator("#weight").wait_for(state="visible", timeout=30_000)
    assert not page.locator("#own-weights").is_visible()
    page.get_by_text("Settings: seed, samples, steps, interval").click()
    page.get_by_text("Classic: 32 DDIM steps").click()
    page.wait_for_function("() => (document.querySelector('#comparison .gl-comparison[data-key]')?.dataset.key || '')"
                           ".split('|')[3] === '32'", timeout=180_000)
    page.close()
