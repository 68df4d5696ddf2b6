"""The bench's w-ladder section: one visitor in Debian's chromium at 1024x768 against a fresh app, alone and
then while a class runs against the same server. Needs gradio, gradio_client, playwright and chromium.

    first result    seconds from opening the page to a finished comparison in #comparison (not a forming one)
    ladder fill     seconds from that result until #ladder-status says the ladder is ready
    w changes       each timed in the page with performance.now(): set #weight-cfg's number, dispatch 'input',
                    until the CFG row (.gl-row[data-method='cfg']) carries the new data-w; median of >= 10, and
                    the requests the page sent to the server meanwhile (the ladder answers in the page: 0)
With a class: the same visitor's w changes while the class samples, and a second visitor (a new seed, so
nothing is cached) opening the page while it runs: first result and ladder fill under load; the class's own
latencies beside them.
"""
from __future__ import annotations

import statistics
import threading
import time

from demo.tools import classroom, launcher

FINISHED = "#comparison .gl-comparison:not([data-forming]) .gl-cell img"
W_CHANGE_JS = """([w, limit]) => new Promise((done) => {
  const box = document.querySelector('#weight-cfg input[type=number]');
  const row = () => document.querySelector("#comparison .gl-row[data-method='cfg']");
  const start = performance.now();
  box.value = w; box.dispatchEvent(new Event('input', {bubbles: true}));
  const check = () => {
    const r = row();
    if (r && r.dataset.w === w) return done(performance.now() - start);
    if (performance.now() - start > limit) return done(null);
    requestAnimationFrame(check);
  };
  check(); })"""
SECOND_VISITOR_SEED = 777


def ladder_values() -> list[str]:
    """The ladder's w values as the page writes them, in an order that never repeats the previous one."""
    from demo.serving.service import LADDER
    values = [f"{w:g}" for w in LADDER]
    return values[1::2] + values[::2]


SEED_SHOWN_JS = """(seed) => {
  const c = document.querySelector('#comparison .gl-comparison:not([data-forming])');
  return !!(c && (c.dataset.key || '').split('|')[1] === seed && c.querySelector('.gl-cell img')); }"""


def open_page(browser, url: str, query: str = "", seed: int | None = None) -> tuple[object, float]:
    """A new 1024x768 page at url?query; (page, seconds until a finished comparison shows: with `seed`, the
    comparison of that seed, by the settings key the picture carries)."""
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    began = time.perf_counter()
    page.goto(f"{url}/{'?' + query if query else ''}", wait_until="domcontentloaded")
    if seed is None:
        page.locator(FINISHED).first.wait_for(timeout=300_000)
    else:
        page.wait_for_function(SEED_SHOWN_JS, arg=str(seed), timeout=300_000, polling=20)
    return page, time.perf_counter() - began


def ladder_fill(page, timeout_s: float) -> float:
    began = time.perf_counter()
    page.locator("#ladder-status").get_by_text("ready").wait_for(timeout=timeout_s * 1000)
    return time.perf_counter() - began


def w_changes(page, count: int, limit_ms: float = 20_000) -> dict:
    """`count` w changes on the ladder, each timed in the page; the requests sent to the server meanwhile."""
    requests: list[str] = []
    listen = lambda request: requests.append(request.url) if "/gradio_api/" in request.url else None  # noqa: E731
    current = page.locator("#comparison .gl-row[data-method='cfg']").get_attribute("data-w")
    values = [w for w in ladder_values() if w != current]
    values = (values * (count // len(values) + 1))[:count]
    page.on("request", listen)
    try:
        times = [page.evaluate(W_CHANGE_JS, [w, limit_ms]) for w in values]
    finally:
        page.remove_listener("request", listen)
    answered = [t for t in times if t is not None]
    return {"median_ms": statistics.median(answered) if answered else None,
            "max_ms": max(answered) if answered else None, "changes": len(times),
            "unanswered": len(times) - len(answered), "requests_during_changes": len(requests), "times_ms": times}


def ladder_section(students: list[classroom.Student], query: str = "", changes: int = 10,
                   fill_timeout_s: float = 600) -> dict:
    """One visitor alone, then with the class (module docstring). `query`: the link both visitors open (the
    page honours links: e.g. num_samples=1&num_steps=2 for a small ladder)."""
    from playwright.sync_api import sync_playwright

    from demo.tools.screenshots import CHROMIUM_ARGS, chromium
    if chromium() is None:
        return {"skipped": "Debian's chromium is not installed"}
    with launcher.launch_app() as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page, first = open_page(browser, url, query)
            alone = {"first_result_seconds": first, "ladder_fill_seconds": ladder_fill(page, fill_timeout_s),
                     "w_changes": w_changes(page, changes)}
            busy = with_class(browser, page, url, query, students, changes, fill_timeout_s)
        finally:
            browser.close()
    return {"alone": alone, "with_class": busy, "query": query}


def with_class(browser, page, url: str, query: str, students: list[classroom.Student], changes: int,
               fill_timeout_s: float) -> dict:
    """The class presses Generate; meanwhile the first visitor scrubs w and a second one arrives."""
    served: dict = {}
    pressed = threading.Event()
    clients = threading.Thread(target=lambda: served.update(classroom.classroom(url, students, pressed)),
                               name="bench-class")
    clients.start()
    pressed.wait(300)
    time.sleep(0.5)                                       # the class's requests reach the server
    out = {"w_changes": w_changes(page, changes), "class_running_after_changes": clients.is_alive()}
    second_query = "&".join(q for q in (query, f"seed={SECOND_VISITOR_SEED}") if q)
    second, first = open_page(browser, url, second_query, SECOND_VISITOR_SEED)
    out["second_visitor"] = {"first_result_seconds": first, "class_running_at_first_result": clients.is_alive(),
                             "ladder_fill_seconds": ladder_fill(second, fill_timeout_s),
                             "class_running_at_ladder_ready": clients.is_alive()}
    clients.join()
    served.pop("pictures", None)
    out["class"] = {k: served.get(k) for k in ("clients", "p50_seconds", "p95_seconds", "max_seconds",
                                               "wall_seconds", "errors")}
    return out
