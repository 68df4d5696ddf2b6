"""A lesson's view: its link (query) and what the page computes when it opens it (work), read back through the
same parsing as a visitor's link; and the warm-up that computes every lesson's view at start-up, in the
background, below visitors' own requests (warm).
"""
from __future__ import annotations

import atexit
import html
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from demo.engine.guidance import METHODS
from demo.engine.pipeline import Request
from demo.serving import service as svc
from demo.serving.compute import on_compute_thread
from demo.toy import lab
from demo.ui import form
from demo.ui.form import COMPARE, SWEEP, TOY
from demo.ui.lessons import Lesson, Measured, lessons
from demo.ui.page import TABS, TOY_PREFIX

log = logging.getLogger("guidance_lab")
VISITOR = "lessons"           # the warm-up's account for background work (Service.admitted)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def query(link: dict) -> str:
    """The query string of a view: its tab, then only the fields that differ from the app's defaults (read now:
    form.COMPARE and form.TOY, the 2-D lab's fields prefixed lab_)."""
    defaults = {**COMPARE.defaults(), **{TOY_PREFIX + k: v for k, v in TOY.defaults().items()}}
    kept = {k: v for k, v in link.items() if k != "tab" and (k not in defaults or _text(v) != _text(defaults[k]))}
    return urlencode({"tab": link.get("tab", "compare"), **{k: _text(v) for k, v in kept.items()}})


@dataclass(frozen=True)
class Work:
    """What opening a view computes: the Compare tab's comparison (base, weights), the w sweep (base) or the 2-D
    lab's run (toy). `problems`: values of the link the app would refuse (none for a lesson's link)."""
    tab: str
    base: Request | None = None
    weights: dict | None = None
    toy: lab.ToyRequest | None = None
    problems: tuple[str, ...] = ()


def work(link: dict) -> Work:
    """Parse the view's query string as the page does on arrival (compare_tab.on_arrive, toy_tab.on_arrive)."""
    params = dict(parse_qsl(query(link)))
    tab = params.get("tab", "compare")
    values, problems = form.from_link(COMPARE, params)
    toy_values, toy_problems = form.from_link(TOY, params, TOY_PREFIX)
    problems += toy_problems + ([f"tab {tab} is not a tab"] if tab not in TABS else [])
    if tab == "lab":
        t = TOY.check(toy_values)
        return Work(tab, toy=lab.parse_toy(t.preset, t.label, t.weight, t.num_steps, t.num_samples, t.seed),
                    problems=tuple(problems))
    v = COMPARE.check(values)
    if tab == "sweep":
        return Work(tab, form.base_request(SWEEP.check({n: getattr(v, n) for n in SWEEP.names if n in COMPARE.names})),
                    problems=tuple(problems))
    base, weights = form.comparison(v)
    return Work(tab, base, weights, problems=tuple(problems))


def views(plan: list[Lesson]) -> list[tuple[str, dict]]:
    """Every (button label, link) of the plan, in order."""
    return [view for lesson in plan for view in lesson.views]


def warm_one(service: svc.Service, job: Work, toy_lab: lab.ToyLab | None) -> None:
    """One view's runs into the caches: background work, sampled only while no visitor waits (the 2-D lab's small
    run goes into the lab's cache, step by step on the compute thread)."""
    if job.tab == "lab":
        steps = _lab_steps(toy_lab, job.toy) if toy_lab is not None else iter(())
    elif job.tab == "sweep":
        steps = iter(service.sweep_live(job.base, background=True, visitor=VISITOR))
    else:
        steps = service.runs_live(svc.comparison_requests(job.base, METHODS, job.weights), background=True,
                                  visitor=VISITOR)
    for _ in steps:
        if STOP.is_set():                    # the server is stopping: leave between steps (cancels the rest)
            steps.close()
            return


@on_compute_thread
def _lab_steps(toy_lab: lab.ToyLab, request: lab.ToyRequest):
    """The lab's run step by step on the compute thread (it is small: scheduler steps interleave)."""
    yield from toy_lab.run_live(request)


def warm(service: svc.Service, toy_lab: lab.ToyLab | None = None, weights: Path | None = None) -> threading.Thread:
    """Compute every lesson's view in a daemon thread, each as background work (the scheduler samples it only
    while no interactive request waits), so that a class clicking through the lessons gets each on arrival. A
    view that cannot be computed is logged and skipped; a lesson opened before its turn forms live. The
    measurements are read here, on the caller's thread (the server's start-up calls it on the compute thread);
    `weights`: the folder the app loaded (the guides' study numbers)."""
    plan = lessons(Measured.load(weights=weights))

    # every link also opens the 2-D lab (at its defaults unless the link sets lab_ fields): warm that view too
    todo = [("the 2-D lab's default view", {"tab": "lab"}), *views(plan)]

    def run() -> None:
        start, done = time.perf_counter(), 0
        for label, link in todo:
            if STOP.is_set():
                return
            try:
                warm_one(service, work(link), toy_lab)
                done += 1
            except Exception as error:          # noqa: BLE001 (a warm-up failure must not stop the server)
                if STOP.is_set():
                    return
                log.warning("lessons: could not prepare %r: %s", label, error)
        log.info("lessons ready: %d of %d views computed in %.0f s", done, len(todo), time.perf_counter() - start)
    thread = threading.Thread(target=run, name="lessons-warm-up", daemon=True)
    thread.start()
    # stop it before the compute thread's executor refuses new work: concurrent.futures shuts its executors down
    # in threading's own exit hooks (run in reverse order of registration, before atexit's), so register there
    register = getattr(threading, "_register_atexit", atexit.register)
    register(stop, thread)
    return thread


STOP = threading.Event()


def stop(thread: threading.Thread, timeout: float = 10.0) -> None:
    """Let the warm-up leave between two steps before the interpreter goes (a thread still inside torch at exit
    aborts the process: 'terminate called without an active exception')."""
    STOP.set()
    thread.join(timeout)


# ---- a lesson as HTML (the tab and the printable page) -----------------------------------------------------

def head_html(number: int, lesson: Lesson) -> str:
    return (f'<h2 class="gl-lesson-title">{number}. {html.escape(lesson.title)}</h2>'
            f'<p class="gl-lesson-text">{html.escape(lesson.text)}</p>')


def body_html(lesson: Lesson, folded: bool = True) -> str:
    """What to look for, the question, and its answer (`folded`: closed until the teacher opens it)."""
    return (f'<p class="gl-lesson-look"><strong>What to look for.</strong> {html.escape(lesson.look_for)}</p>'
            f'<p class="gl-lesson-question"><strong>Ask the class.</strong> {html.escape(lesson.question)}</p>'
            f'<details class="gl-lesson-answer"{"" if folded else " open"}><summary>Answer (for the teacher)</summary>'
            f'<p>{html.escape(lesson.answer)}</p></details>')
