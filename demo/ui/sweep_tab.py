"""The w sweep tab: every guided method at several w, with the Compare tab's digit, guide and settings; and the
stored evaluation's measured trade-offs."""
from __future__ import annotations

import gradio as gr

from demo.serving import service as svc
from demo.ui import form, views
from demo.ui.common import Runtime, follow, user_errors
from demo.ui.form import SWEEP
from demo.ui.page import TABS
from demo.ui.prose import SWEEP_INTRO


@user_errors
def on_sweep(progress=gr.Progress(), **values):
    live = Runtime.get().sweep_live(form.base_request(SWEEP.check(values)))
    yield from follow(live, progress, "w sweep: every method and w together", 2)
    yield views.sweep_html(live.result), views.sweep_tradeoff(live.result)


def tab(compare: dict) -> None:
    """Lay out and wire the tab; its inputs are the Compare tab's widgets (`compare`, by field name)."""
    with gr.Tab(TABS["sweep"], id="sweep") as sweep_tab:
        gr.Markdown(SWEEP_INTRO.format(weights=", ".join(f"{w:g}" for w in svc.SWEEP_WEIGHTS)))
        with gr.Row():
            button = gr.Button("Run the sweep", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        grid = gr.HTML(elem_id="sweep", padding=False)
        plot = gr.Plot(show_label=False)
        stored = views.saved_results()
        if stored is not None:
            table, plot_files = stored
            gr.Markdown("### Measured trade-offs on the whole model (precomputed, `python -m demo.science.evaluate`)")
            for pair in (plot_files[:2], plot_files[2:]):
                with gr.Row(elem_classes="evaluation-plots"):
                    for path in pair:
                        gr.Image(path, show_label=False, container=False, buttons=[], min_width=280,
                                 interactive=False)
            with gr.Accordion("The numbers", open=False):
                gr.Markdown(table)
    inputs = {name: compare[name] for name in SWEEP.names}
    run = button.click(on_sweep, inputs_kwargs=inputs, outputs=[grid, plot], api_name="sweep",
                       concurrency_limit=None)
    shown = sweep_tab.select(on_sweep, inputs_kwargs=inputs, outputs=[grid, plot], api_visibility="private",
                             concurrency_limit=None)
    stop.click(None, cancels=[run, shown], api_visibility="private")
    sweep_tab.select(None, js="() => { GL.setParams({tab: 'sweep'}); }")
