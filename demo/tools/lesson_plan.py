"""The Lessons as one printable page for the teacher, from the same source as the Lessons tab
(demo/ui/lessons.py), with every view's picture computed here:

    python -m demo.tools.lesson_plan [--out FILE.html|FILE.md] [--url http://127.0.0.1:7860] [--no-pictures]

A comparison is drawn as the app's downloadable grid, the w sweep as one sample per method and w, the 2-D lab as
its figure; each is embedded as a PNG data URI, so the page is one file. The default --out is in the temporary
folder (nothing tracked is written). Each view also gets its link into the app at --url.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import tempfile
from pathlib import Path

import numpy as np

from demo.engine.guidance import METHODS
from demo.ui import render, views
from demo.ui.lesson_views import Work, body_html, head_html, query, work
from demo.ui.lessons import PRINT_INTRO, Lesson, Measured, lessons

DEFAULT_OUT = Path(tempfile.gettempdir()) / "guidance_lab_lessons.html"
STYLE = """body { font-family: system-ui, sans-serif; max-width: 900px; margin: 24px auto; padding: 0 16px;
  line-height: 1.45; color: #1f2937; }
section { border-left: 6px solid #4f46e5; padding: 2px 16px; margin: 0 0 22px 0; break-inside: avoid; }
img { max-width: 100%; height: auto; image-rendering: pixelated; display: block; margin: 6px 0; }
.view { margin: 8px 0; } .view a { font-weight: 600; } summary { font-weight: 600; }"""


def picture(service, job: Work) -> bytes:
    """The PNG of what the view shows."""
    if job.tab == "lab":
        from demo.toy import lab
        t = job.toy
        figure = lab.figure(lab.run_toy(t.preset, t.label, t.weight, t.num_steps, t.num_samples, t.seed))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
    if job.tab == "sweep":
        results = service.sweep_live(job.base).run()
        methods = list(dict.fromkeys(m for m, _ in results.runs))
        weights = list(dict.fromkeys(w for _, w in results.runs))
        rows = [np.stack([results.runs[m, w].pixels[0] for w in weights]) for m in methods]
        return render.png(render.grid(rows, [views.short_title(m) for m in methods], [f"w = {w:g}" for w in weights],
                                      label_width=150, title=views.settings_line(results.base, show_w=False)
                                      + ", sample 1"))
    return views.comparison_grid(service.compare(job.base, METHODS, job.weights))


def uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def as_html(plan: list[Lesson], pictures: dict[str, bytes], url: str) -> str:
    parts = [f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Guidance Lab: lessons</title>"
             f"<style>{STYLE}</style><h1>Guidance Lab: lessons</h1><p>{html.escape(PRINT_INTRO)}</p>"]
    for number, lesson in enumerate(plan, 1):
        shown = []
        for label, link in lesson.views:
            address = f"{url}/?{query(link)}"
            image = (f'<img src="{uri(pictures[query(link)])}" alt="{html.escape(label)}">'
                     if query(link) in pictures else "")
            shown.append(f'<div class="view"><a href="{html.escape(address)}">{html.escape(label)}</a>{image}</div>')
        parts.append(f"<section>{head_html(number, lesson)}{''.join(shown)}{body_html(lesson, folded=False)}"
                     f"</section>")
    return "\n".join(parts) + "\n</html>\n"


def as_markdown(plan: list[Lesson], pictures: dict[str, bytes], url: str) -> str:
    parts = ["# Guidance Lab: lessons", "", PRINT_INTRO, ""]
    for number, lesson in enumerate(plan, 1):
        parts += [f"## {number}. {lesson.title}", "", lesson.text, ""]
        for label, link in lesson.views:
            address = f"{url}/?{query(link)}"
            parts += [f"[{label}]({address})", ""]
            if query(link) in pictures:
                parts += [f"![{label}]({uri(pictures[query(link)])})", ""]
        parts += [f"**What to look for.** {lesson.look_for}", "", f"**Ask the class.** {lesson.question}", "",
                  f"<details><summary>Answer (for the teacher)</summary>\n\n{lesson.answer}\n\n</details>", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.tools.lesson_plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=".html or .md (default: %(default)s)")
    parser.add_argument("--url", default="http://127.0.0.1:7860", help="the app the links open")
    parser.add_argument("--no-pictures", action="store_true", help="the text and links only (no sampling)")
    args = parser.parse_args(argv)
    plan = lessons(Measured.load())
    pictures: dict[str, bytes] = {}          # query -> PNG
    if not args.no_pictures:
        from demo.engine.pipeline import Models
        from demo.serving.service import Service
        service = Service(Models.load())
        for lesson in plan:
            for label, link in lesson.views:
                print(f"{lesson.title}: {label}", flush=True)
                pictures[query(link)] = picture(service, work(link))
    url = args.url.rstrip("/")
    page = as_markdown if args.out.suffix.lower() in (".md", ".markdown") else as_html
    args.out.write_text(page(plan, pictures, url))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
