"""The 2-D exact lab tab: every method on an analytic Gaussian mixture, with the tilted target density."""
from __future__ import annotations

import gradio as gr

from demo.serving.compute import on_compute_thread
from demo.toy import lab
from demo.ui.common import LATEX, checked_input, follow, number, slider, user_errors
from demo.ui.form import TOY, from_link
from demo.ui.page import TABS, TOY_PREFIX
from demo.ui.prose import TOY_INTRO

TOY_LAB = lab.ToyLab()


@on_compute_thread
@user_errors
def on_toy(progress=gr.Progress(), **values):
    """Sample every method on the analytic mixture (step by step: Stop ends it) and draw it."""
    v = TOY.check(values)
    request = lab.parse_toy(v.preset, v.label, v.weight, v.num_steps, v.num_samples, v.seed)
    live = TOY_LAB.run_live(request)
    yield from follow(live, progress, "sampling every method on the exact mixture", 2)
    result = live.result
    timing = "from cache" if result.from_cache else f"sampled in {result.seconds:.2f} s"
    yield (lab.figure(result, v.field_step if v.show_field else None),
           f"{lab.moments_table(result)}\n\nAll {len(result.paths)} methods: {timing}.")


def on_preset(preset, label):
    """The class picker offers the classes of the chosen mixture."""
    choices = lab.classes(preset) if preset in lab.PRESETS else [0]
    return gr.Radio(choices=choices, value=label if label in choices else choices[0])


def on_arrive(request: gr.Request):
    """The lab's fields a link sets (?lab_weight=5); a value it cannot use keeps its default (the Compare tab's
    link note says so)."""
    params = dict(request.query_params) if request is not None else {}
    values, _ = from_link(TOY, params, TOY_PREFIX)
    v = TOY.check(values)
    return [on_preset(v.preset, v.label), *(getattr(v, name) for name in TOY.names if name != "label")]


def tab(blocks: gr.Blocks, link_open: gr.Button) -> None:
    """Lay out and wire the tab; `link_open` is the Compare tab's hidden button that opens a link in the page."""
    with gr.Tab(TABS["lab"], id="lab") as lab_tab:
        gr.Markdown(TOY_INTRO, latex_delimiters=LATEX, elem_id="lab-intro")
        w = {}
        with gr.Row():
            with gr.Column(scale=0, min_width=280):
                preset = TOY["preset"]
                w["preset"] = checked_input(gr.Dropdown(list(preset.choices), value=preset.default,
                                                        label=preset.label), preset)
                w["label"] = checked_input(gr.Radio(lab.classes(preset.default), value=TOY["label"].default,
                                                    label=TOY["label"].label), TOY["label"])
                w["weight"] = slider(TOY["weight"], 0.1)
                w["num_steps"] = slider(TOY["num_steps"], 1)
                w["num_samples"] = slider(TOY["num_samples"], 10)
                w["seed"] = number(TOY["seed"], precision=0)
                w["show_field"] = checked_input(gr.Checkbox(value=TOY["show_field"].default,
                                                            label="Show the guidance vector field w·Δ"),
                                                TOY["show_field"])
                w["field_step"] = slider(TOY["field_step"], 1, label="… at step (noise decreases →)")
                with gr.Row(elem_classes="buttons"):
                    button = gr.Button("Sample", variant="primary", min_width=80)
                    stop = gr.Button("Stop", variant="stop", min_width=60, scale=0)
            with gr.Column(scale=1):
                plot = gr.Plot(show_label=False, elem_id="toy-plot")
                table = gr.Markdown()
    inputs = {name: w[name] for name in TOY.names}
    arrive = gr.on([blocks.load, link_open.click], on_arrive, None,
                   [w["label"], *(w[n] for n in TOY.names if n != "label")], api_visibility="private",
                   show_progress="hidden")
    shown = dict(show_progress_on=plot)      # the table keeps its last values while the plot says it is busy
    arrived = arrive.then(on_toy, inputs_kwargs=inputs, outputs=[plot, table], api_visibility="private",
                          trigger_mode="always_last", **shown)     # links opened in quick succession: the last one shows
    run = gr.on([button.click, w["weight"].release, w["label"].input, w["show_field"].input,
                 w["field_step"].release], on_toy, inputs_kwargs=inputs, outputs=[plot, table], api_name="toy",
                 **shown)
    write = ", ".join(f"{TOY_PREFIX}{n}: v[{i}]" for i, n in enumerate(TOY.names))
    run.success(None, inputs=list(inputs.values()), js=f"(...v) => {{ GL.setParams({{{write}}}); }}")
    lab_tab.select(None, js="() => { GL.setParams({tab: 'lab'}); }")
    preset_event = w["preset"].change(on_preset, [w["preset"], w["label"]], w["label"], api_visibility="private")
    redraw = preset_event.then(on_toy, inputs_kwargs=inputs, outputs=[plot, table], api_visibility="private",
                               **shown)
    stop.click(None, cancels=[arrived, run, redraw], api_visibility="private")
