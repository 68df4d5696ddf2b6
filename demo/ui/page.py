"""The page around the tabs: its head (the page-side script, assets/lab.js, with the facts it needs from the
contract), the tabs' ids, which links name (?tab=sweep), and reading a link on arrival."""
from __future__ import annotations

import json
import logging

import gradio as gr

from demo.engine.config import ASSETS_DIR
from demo.engine.validation import shown
from demo.serving.settings import one_line
from demo.ui import form
from demo.ui.form import COMPARE, GUIDED, TOY

log = logging.getLogger("guidance_lab")

TABS = {"compare": "Compare", "sweep": "w sweep", "lab": "2-D exact lab", "how": "How it works",
        "lessons": "Lessons"}
TOY_PREFIX = "lab_"                       # the 2-D lab's fields in a link: ?tab=lab&lab_weight=5
SETTLE_MS = 1200                          # after scrubbing w on the ladder, the server refreshes summary and trajectory


def head() -> str:
    config = {"fields": list(COMPARE.names), "guided": list(GUIDED), "settleMs": SETTLE_MS,
              "defaults": {**COMPARE.defaults(), "tab": "compare",
                           **{TOY_PREFIX + k: v for k, v in TOY.defaults().items()}}}
    script = (ASSETS_DIR / "lab.js").read_text()
    return f"<script>window.GL_CONFIG = {json.dumps(config)};</script>\n<script>{script}</script>"


def theme() -> gr.themes.Base:
    """Gradio's Soft theme with every text at WCAG AA contrast (4.5:1) or better: labels, the selected radio and
    tab, the primary button and the softer text one or two shades darker than Soft's."""
    return gr.themes.Soft(primary_hue="indigo").set(
        block_label_text_color="*primary_700", block_title_text_color="*primary_700",
        button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
        checkbox_label_background_fill_selected="*primary_600", color_accent="*primary_600",
        body_text_color_subdued="*neutral_600", link_text_color="*primary_700")


def on_arrive(request: gr.Request):
    """A link opens its view: every field it sets (others at their defaults), the tab; one line for values that
    cannot be used."""
    params = dict(request.query_params) if request is not None else {}
    values, problems = form.from_link(COMPARE, params)
    tab = params.get("tab", "compare")
    if tab not in TABS:
        problems.append(f"tab must be one of {', '.join(TABS)}; got {shown(tab)}")
        tab = "compare"
    known = {*COMPARE.names, "tab", *(TOY_PREFIX + n for n in form.TOY.names)}
    problems += [f"{shown(k)} is not a setting" for k in params if k not in known]
    if problems:
        log.info("link: %s", one_line("; ".join(problems)))
    note = ("**This link has values the app cannot use; their defaults are shown:** " + "; ".join(problems) + "."
            ) if problems else ""
    v = COMPARE.check(values)
    return [*(getattr(v, name) for name in COMPARE.names), gr.Tabs(selected=tab), note]
