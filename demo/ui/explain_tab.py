"""The How it works tab: the methods, the guides, the samplers and the references."""
import gradio as gr

from demo.ui.common import LATEX
from demo.ui.page import TABS
from demo.ui.prose import EXPLANATION


def tab() -> None:
    with gr.Tab(TABS["how"], id="how") as how_tab:
        gr.Markdown(EXPLANATION, latex_delimiters=LATEX)
    how_tab.select(None, js="() => { GL.setParams({tab: 'how'}); }")
