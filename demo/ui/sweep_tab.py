"""The w sweep tab: every guided method at several w, with the Compare tab's digit, guide and settings; and the
stored evaluation's measured trade-offs."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from demo.engine.config import ASSETS_DIR
from demo.serving import service as svc
from demo.ui import form, views
from demo.ui.common import Runtime, follow, slider, user_errors
from demo.ui.form import SWEEP
from demo.ui.page import TABS
from demo.ui.prose import SWEEP_INTRO

PLOT_ALT = {"evaluation_accuracy": "Class accuracy of every method against w, mean ± sd over seeds, with the real-data "
                                   "floor",
            "evaluation_fid": "FID against w for every method (lower is better), mean ± sd over seeds, with the "
                              "real-data floor",
            "evaluation_precision_recall": "Precision against recall of every method as w grows",
            "evaluation_classifier_fooling": "Classifier guidance: the guiding classifier's own confidence against "
                                             "the evaluation classifier's accuracy as w grows"}


@user_errors
def on_sweep(progress=gr.Progress(), **values):
    v = SWEEP.check(values)
    live = Runtime.get().sweep_live(form.base_request(v))
    yield from follow(live, progress, "w sweep: every method and w together", 2)
    yield views.sweep_html(live.result, v.sample - 1), views.sweep_tradeoff(live.result)


def on_arrival(request: gr.Request = None, **values):
    """A link that opens the sweep tab runs the sweep (other links leave it for when the tab is opened)."""
    if request is None or dict(request.query_params).get("tab") != "sweep":
        yield gr.skip(), gr.skip()
        return
    yield from on_sweep(**values)


def tab(compare: dict):
    """Lay out and wire the tab; returns `after(event)`, which runs the sweep after the page's arrival event
    when the link named this tab."""
    """Lay out and wire the tab; its inputs are the Compare tab's widgets (`compare`, by field name)."""
    with gr.Tab(TABS["sweep"], id="sweep") as sweep_tab:
        gr.Markdown(SWEEP_INTRO.format(weights=", ".join(f"{w:g}" for w in svc.SWEEP_WEIGHTS)))
        with gr.Row():
            button = gr.Button("Run the sweep", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        with gr.Row(elem_id="sweep-row"):
            with gr.Column(scale=3, min_width=320):
                grid = gr.HTML(elem_id="sweep", padding=False)
            with gr.Column(scale=2, min_width=280):
                sample = slider(SWEEP["sample"], 1, info="the same sample (seed and noise) in every row and column",
                                elem_id="sweep-sample")
                plot = gr.Plot(show_label=False, elem_id="sweep-plot")
        stored = views.saved_results()
        if stored is not None:
            table, plot_files = stored
            gr.Markdown("## Measured trade-offs on the whole model (precomputed, `python -m demo.science.evaluate`)")
            gr.set_static_paths([ASSETS_DIR])
            figures = "".join(f'<img src="gradio_api/file={html.escape(str(path))}" alt="{html.escape(PLOT_ALT.get(Path(path).stem, ""))}">'
                              for path in plot_files)
            gr.HTML(f'<div class="gl-evaluation-plots">{figures}</div>', padding=False)
            with gr.Accordion("The numbers", open=False):
                gr.Markdown(table)
    inputs = {**{name: compare[name] for name in SWEEP.names if name != "sample"}, "sample": sample}
    run = button.click(on_sweep, inputs_kwargs=inputs, outputs=[grid, plot], api_name="sweep",
                       concurrency_limit=None)
    shown = sweep_tab.select(on_sweep, inputs_kwargs=inputs, outputs=[grid, plot], api_visibility="private",
                             concurrency_limit=None)
    picked = sample.release(on_sweep, inputs_kwargs=inputs, outputs=[grid, plot], api_visibility="private",
                            concurrency_limit=None)
    stop.click(None, cancels=[run, shown, picked], api_visibility="private")
    sweep_tab.select(None, js="() => { GL.setParams({tab: 'sweep'}); }")

    def after(event):
        arrival = event.then(on_arrival, inputs_kwargs=inputs, outputs=[grid, plot], api_visibility="private",
                             concurrency_limit=None, trigger_mode="always_last")
        stop.click(None, cancels=[arrival], api_visibility="private")
    return after
