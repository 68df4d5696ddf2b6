"""The Lessons tab: the class plan (demo/ui/lessons.py), one card per lesson; its Show buttons open their views
in the page (GL.openLink, assets/lab.js: the link becomes the URL and every tab's arrival handler reads it)."""
from __future__ import annotations

import json

import gradio as gr

from demo.ui.common import Runtime
from demo.ui.lesson_views import body_html, head_html, query
from demo.ui.lessons import INTRO, Measured, lessons
from demo.ui.page import TABS


def tab() -> None:
    with gr.Tab(TABS["lessons"], id="lessons") as lessons_tab:
        gr.Markdown(INTRO, elem_id="lessons-intro")
        for number, lesson in enumerate(lessons(Measured.load(weights=Runtime.weights_folder)), 1):
            with gr.Column(elem_classes="gl-lesson", elem_id=f"lesson-{lesson.key}"):
                gr.HTML(head_html(number, lesson), padding=False)
                with gr.Row(elem_classes="gl-lesson-buttons"):
                    for k, (label, link) in enumerate(lesson.views):
                        show = gr.Button(label, variant="primary" if k == 0 else "secondary", size="sm", scale=0,
                                         elem_id=f"show-{lesson.key}-{k}")
                        opened = f"GL.openLink({json.dumps(query(link))}); window.scrollTo(0, 0);"
                        show.click(None, js=f"() => {{ {opened} }}")     # the view, from its top
                gr.HTML(body_html(lesson), padding=False)
    lessons_tab.select(None, js="() => { GL.setParams({tab: 'lessons'}); }")
