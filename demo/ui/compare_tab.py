"""The Compare tab: every method with the same seed, one aligned picture, the trajectory of a followed sample.

Layout, wiring and handlers together. The fields come from form.COMPARE; the handlers take them by name.
"""
from __future__ import annotations

import logging
import random
import time

import gradio as gr

from demo.engine.config import GUIDES, LIMITS, PRESETS, SIGMA_MAX, SIGMA_MIN
from demo.engine.guidance import METHODS
from demo.engine.validation import RequestError
from demo.serving import outputs
from demo.serving import service as svc
from demo.ui import form, forming, hints, picture, views
from demo.ui.common import LATEX, YIELD_EVERY, Runtime, checked_input, follow, number, radio, slider, user_errors
from demo.ui.form import COMPARE, GUIDED
from demo.ui.page import TABS, on_arrive
from demo.ui.prose import CONVENTION

log = logging.getLogger("guidance_lab")
LADDER_RETRIES = 8         # a visitor's new ladder waits up to 2 s for the cancelled one's budget
LADDER_MAX_COST = 1.5      # the w ladder is sampled for comparisons up to this many default comparisons
PICK_JS = """element.addEventListener('click', (event) => {
  const cell = event.target.closest('[data-sample]');
  if (!cell) return;
  element.querySelectorAll('.gl-selected').forEach((c) => c.classList.remove('gl-selected'));
  element.querySelectorAll(`.gl-cell[data-sample="${cell.dataset.sample}"]`).forEach((c) => c.classList.add('gl-selected'));
  window.GL?.setParams({follow: Number(cell.dataset.sample)});
  trigger('click', {sample: Number(cell.dataset.sample)});
});"""
OUTDATED_JS = "() => { document.querySelector('#comparison')?.classList.add('gl-outdated'); }"
CURRENT_JS = ("() => { document.querySelector('#comparison')?.classList.remove('gl-outdated'); "
              "document.querySelectorAll('.gl-stale').forEach((el) => el.classList.remove('gl-stale')); }")


# ---- handlers: checked values in, displayable values out -------------------------------------------------

@user_errors
def on_compare(**values):
    """Every method with the same seed, sampled together (or straight from the cache: the w ladder)."""
    v = COMPARE.check(values)
    base, weights = form.comparison(v)
    service = Runtime.get()
    live = service.compare_live(base, METHODS, weights)
    yield from forming.forming(live, service, base, weights, v.forming)
    results = live.result
    followed = min(v.follow, base.num_samples - 1)
    warning = hints.beyond_range(weights, base.guide, Runtime.weights_folder)
    shown_picture = picture.comparison_html(results.runs, followed, warning, service.runs_computed, base)
    status = f"**{views.settings_line(base, weights, short=True)}** · {views.timing(results)}"
    name = f"guidance_lab_class{base.label}_seed{base.seed}.png"
    yield shown_picture, views.summary(results), status, outputs.save_file(views.comparison_grid(results),
                                                                     Runtime.out_dir, name)


@user_errors
def on_ladder(request: gr.Request = None, **values):
    """Sample the w ladder of every guided method in the background (steps run only while no visitor waits
    for a result, counted against this visitor's budget), so that moving w along it is instant."""
    for attempt in range(LADDER_RETRIES + 1):
        try:
            yield from _ladder(getattr(request, "session_hash", None), **values)
            return
        except RequestError as error:        # over the budget, or the server busy: said in the status line
            if attempt == LADDER_RETRIES or "your background work" not in str(error):
                yield f"No w ladder now: {error}", ""
                return
            time.sleep(0.25)                 # this visitor's cancelled ladder is still being released


def _ladder(visitor: str | None, **values):
    base, weights = form.comparison(COMPARE.check(values))
    service = Runtime.get()
    size = svc.cost(svc.comparison_requests(base, METHODS, weights)) / svc.REFERENCE_COST
    if size > LADDER_MAX_COST:           # the ladder costs ~15 comparisons: only for default-sized settings
        yield (f"No w ladder for settings this large ({size:.1f}x a default comparison): each w change samples. "
               f"Fewer samples or steps bring it back.", "")
        return
    live = service.sweep_live(base, GUIDED, svc.LADDER, background=True, visitor=visitor)
    missing = service.missing(svc.sweep_requests(base, GUIDED, svc.LADDER))
    if missing:
        last = 0.0
        for done, total in live:
            if time.perf_counter() - last > YIELD_EVERY:
                last = time.perf_counter()
                yield f"Sampling the w ladder for instant w … step {done} of {total} ({missing} runs)", gr.skip()
    else:
        live.run()
    yield ("w ladder ready: moving w to " + ", ".join(f"{w:g}" for w in svc.LADDER) +
           " shows the result at once; other values are sampled.", picture.ladder_payload(base, live.result.runs))


@user_errors
def on_trajectory(progress=gr.Progress(), **values):
    """Filmstrip, GIF and per-step plots of the followed sample (recomputed if not cached: same seed, same
    result)."""
    v = COMPARE.check(values)
    base, weights = form.comparison(v)
    live = Runtime.get().compare_live(base, METHODS, weights)
    yield from follow(live, progress, "sampling every method together", 3)
    runs = live.result.runs
    index = min(v.follow, base.num_samples - 1)
    Runtime.get().probe(list(runs.values()), index)
    gif = outputs.save_file(views.animation(runs, index), Runtime.out_dir, "denoising.gif")
    yield views.filmstrip_html(runs, index), gif, views.step_plots(runs, index)


def on_pick(followed, event: gr.EventData):
    """A click on a digit of the comparison: follow that sample."""
    sample = getattr(event, "_data", None) or {}
    return int(sample.get("sample", followed)) if isinstance(sample, dict) else followed


def on_mode(mode):
    return gr.update(visible=mode == "same"), gr.update(visible=mode == "own")


def on_guide(guide):
    """The guided methods' range captions follow the chosen guide."""
    return [gr.update(info=hints.caption(m, guide, Runtime.weights_folder) or "not measured with this guide")
            for m in GUIDED]


def on_preset(key):
    """A preset's steps, sampler and guidance interval in their widgets (then the comparison runs)."""
    return [gr.update(value=value) for value in form.preset_values(key).values()]


def on_stop():
    return "Stopped. The picture shows the last finished result."


def new_seed() -> int:
    return random.randint(0, LIMITS.max_seed)


def prepare(service: svc.Service) -> None:
    """Sample the default comparison before the first visitor arrives, so the page opens on a result."""
    base, weights = form.comparison_of()
    service.compare(base, METHODS, weights)


# ---- layout and wiring -----------------------------------------------------------------------------------

def guides_installed() -> list[str]:
    """Guide keys the loaded weights offer (all of config.GUIDES before the models are attached)."""
    if Runtime.service is None:
        return [g.key for g in GUIDES]
    return [GUIDES[0].key, *Runtime.service.models.guides]


def controls() -> dict[str, gr.components.Component]:
    """The Compare tab's inputs, one widget per field of form.COMPARE (the hidden `follow` is a gr.State)."""
    w: dict = {}
    w["label"] = radio(COMPARE["label"], elem_id="digit")
    with gr.Row(elem_id="buttons"):
        w["generate"] = gr.Button("Generate", variant="primary", elem_id="generate", min_width=80)
        w["stop"] = gr.Button("Stop", variant="stop", elem_id="stop", min_width=60, scale=0)
    w["mode"] = radio(COMPARE["mode"], {"same": "same w for all", "own": "each at its own w"}, elem_id="mode")
    with gr.Group(visible=COMPARE["mode"].default == "same") as w["same_group"]:
        w["weight"] = slider(COMPARE["weight"], 0.25, info="0 = unguided, for every method", elem_id="weight")
    with gr.Group(visible=COMPARE["mode"].default == "own", elem_id="own-weights") as w["own_group"]:
        for m in GUIDED:
            name = form.weight_name(m)
            w[name] = slider(COMPARE[name], 0.25, info=hints.caption(m), elem_id=f"weight-{m}")
    guide = COMPARE["guide"]
    w["guide"] = checked_input(gr.Dropdown([(g.label, g.key) for g in GUIDES if g.key in guides_installed()],
                                           value=guide.default, label=guide.label + " D_weak", info=hints.GUIDE_INFO,
                                           elem_id="guide"), guide)
    w["ladder_status"] = gr.Markdown(elem_id="ladder-status")
    with gr.Accordion("Settings: seed, samples, steps, interval", open=False):
        w["preset"] = gr.Radio([(p.label, p.key) for p in PRESETS], value=PRESETS[0].key, label="Speed preset",
                               info="sets steps, sampler and guidance interval; the fast one measures as good "
                                    "as the classic one here (README: the FLOP study)", elem_id="preset")
        with gr.Row():
            w["seed"] = number(COMPARE["seed"], precision=0, min_width=120)
            w["dice"] = gr.Button("🎲 New seed", size="sm", min_width=100)
        w["num_samples"] = slider(COMPARE["num_samples"], 1)
        w["num_steps"] = slider(COMPARE["num_steps"], 1)
        w["sampler"] = radio(COMPARE["sampler"], form.SAMPLER_NAMES)
        w["forming"] = radio(COMPARE["forming"], {"x0": "its current x0 estimate", "xt": "its noisy state x_t"})
        gr.Markdown(f"Guidance interval (Kynkäänniemi et al. 2024): guide only while σ_lo < σ ≤ σ_hi. Noise runs "
                    f"from σ = {SIGMA_MAX:g} down to {SIGMA_MIN:g}.")
        with gr.Row():
            w["sigma_lo"] = number(COMPARE["sigma_lo"], min_width=100)
            w["sigma_hi"] = number(COMPARE["sigma_hi"], min_width=100)
    with gr.Accordion("The convention for w", open=False):
        gr.Markdown(CONVENTION, latex_delimiters=LATEX)
    w["to_lessons"] = gr.Button("Lessons: a class plan →", size="sm", variant="secondary", elem_id="to-lessons")
    return w


def tab() -> dict[str, gr.components.Component]:
    """Lay out the Compare tab; returns its widgets by name (the wiring and other tabs use them)."""
    with gr.Tab(TABS["compare"], id="compare") as w_tab:
        w = {"tab": w_tab, "link_note": gr.Markdown(elem_id="link-note")}
        with gr.Row(elem_id="compare-row"):
            with gr.Column(scale=0, min_width=300, elem_id="controls"):
                w.update(controls())
            with gr.Column(scale=1, elem_id="results"):
                w["status"] = gr.Markdown(elem_id="status")
                w["comparison"] = gr.HTML(elem_id="comparison", js_on_load=PICK_JS, padding=False)
                w["summary"] = gr.Markdown(elem_id="summary")
                with gr.Row(elem_id="share"):
                    w["download"] = gr.DownloadButton("Download the comparison (PNG)", size="sm",
                                                      variant="secondary", elem_id="download", scale=0, min_width=250)
                    w["copy"] = gr.Button("Copy link to this view", size="sm", variant="secondary",
                                          elem_id="copy-link", scale=0, min_width=190)
                    gr.HTML('<span id="copy-note" role="status" aria-live="polite"></span>', padding=False)
        w["follow"] = gr.State(COMPARE["follow"].default)
        w["trigger"] = gr.Button("Update", elem_id="compare-trigger", elem_classes="gl-hidden")
        w["link_open"] = gr.Button("Open link", elem_id="link-open", elem_classes="gl-hidden")
        w["ladder_data"] = gr.HTML(elem_id="ladder-data", elem_classes="gl-hidden", padding=False)
        with gr.Accordion("Per-step trajectories of the selected sample (click a digit above)", open=True):
            w["filmstrip"] = gr.HTML(elem_id="filmstrip", padding=False)
            w["gif"] = gr.Image(show_label=False, type="filepath", elem_id="gif", container=False, buttons=[])
            w["plots"] = gr.Plot(show_label=False, elem_id="step-plots")
    return w


def wire(blocks: gr.Blocks, w: dict, tabs: gr.Tabs):
    """The Compare tab's events. A link (or the default view) on arrival, Generate, the hidden trigger the page
    clicks for a w off the ladder, and a change of digit, w mode or guide sample every method; then the page
    un-greys, the link follows, the trajectory of the followed sample and, in the background, the w ladder.
    Stop cancels all of them. Returns the arrival event (other tabs follow a link too)."""
    inputs = {name: w[name] for name in COMPARE.names}
    outputs_ = [w["comparison"], w["summary"], w["status"], w["download"]]
    trajectory_outputs = [w["filmstrip"], w["gif"], w["plots"]]
    sampling = dict(concurrency_limit=None)    # handlers wait on the scheduler, which batches everyone's steps
    write_link = f"(...values) => {{ GL.writeLink(...values); ({CURRENT_JS})(); }}"

    def chain(event, api: bool) -> tuple:
        """After a comparison: un-grey, write the link, then the trajectory and the w ladder."""
        event.success(None, inputs=list(inputs.values()), js=write_link)
        ladder = event.success(on_ladder, inputs_kwargs=inputs, outputs=[w["ladder_status"], w["ladder_data"]],
                               show_progress="hidden", api_visibility="private", **sampling)
        trajectory = event.success(on_trajectory, inputs_kwargs=inputs, outputs=trajectory_outputs,
                                   show_progress="minimal", **({"api_name": "trajectory"} if api else
                                                               {"api_visibility": "private"}), **sampling)
        return ladder, trajectory

    arrive = gr.on([blocks.load, w["link_open"].click], on_arrive, None, [*inputs.values(), tabs, w["link_note"]],
                   api_visibility="private", show_progress="hidden")   # the page's link, or one GL.openLink(query) put there
    arrive.then(None, js="() => { GL.ready = true; }")
    arrived = arrive.then(on_compare, inputs_kwargs=inputs, outputs=outputs_, api_visibility="private",
                          show_progress="hidden", trigger_mode="always_last", **sampling)
    changes = [w["label"].input, w["mode"].input, w["guide"].input]
    compare = gr.on([w["generate"].click, w["trigger"].click, *changes], on_compare, inputs_kwargs=inputs,
                    outputs=outputs_, api_name="compare", trigger_mode="always_last", show_progress="hidden",
                    **sampling)
    preset = w["preset"].input(on_preset, w["preset"], [w[n] for n in form.preset_values(PRESETS[0].key)],
                               api_visibility="private", queue=False)
    preset_compare = preset.then(on_compare, inputs_kwargs=inputs, outputs=outputs_, api_visibility="private",
                                 show_progress="hidden", **sampling)
    dice = w["dice"].click(new_seed, None, w["seed"], api_visibility="private")
    dice_compare = dice.then(on_compare, inputs_kwargs=inputs, outputs=outputs_, api_visibility="private",
                             show_progress="hidden", **sampling)
    events = [arrived, compare, dice_compare, preset_compare]
    ladders = []
    for event, api in ((compare, True), (arrived, False), (dice_compare, False), (preset_compare, False)):
        ladder, trajectory = chain(event, api)
        ladders.append(ladder)
        events += [ladder, trajectory]
    gr.on([w["generate"].click, w["trigger"].click, w["dice"].click, w["preset"].input, w["link_open"].click,
           *changes], None, cancels=ladders, api_visibility="private")
    pick = w["comparison"].click(on_pick, w["follow"], w["follow"], api_visibility="private")
    pick.then(on_trajectory, inputs_kwargs=inputs, outputs=trajectory_outputs, api_visibility="private",
              show_progress="minimal", **sampling)
    w["mode"].change(on_mode, w["mode"], [w["same_group"], w["own_group"]], api_visibility="private", queue=False)
    w["guide"].change(on_guide, w["guide"], [w[form.weight_name(m)] for m in GUIDED], api_visibility="private",
                      queue=False)
    for name in ("num_steps", "sampler", "num_samples", "seed", "sigma_lo", "sigma_hi"):
        w[name].input(None, js=OUTDATED_JS)
    w["copy"].click(None, js="() => { GL.copyLink(); }")
    w["to_lessons"].click(lambda: gr.Tabs(selected="lessons"), None, tabs, api_visibility="private",
                          js="() => { GL.setParams({tab: 'lessons'}); }")
    w["tab"].select(None, js="() => { GL.setParams({tab: 'compare'}); }")
    w["stop"].click(on_stop, None, w["status"], cancels=events, api_visibility="private")
    return arrive
