"""The How it works tab: the methods, the guides, the samplers and the references."""
import gradio as gr

from demo.ui.common import LATEX
from demo.ui.prose import EXPLANATION


def tab() -> None:
    with gr.Tab("How it works"):
        gr.Markdown(EXPLANATION, latex_delimiters=LATEX)
