"""Guidance Lab: compare guidance methods side by side, same seed. Layout and wiring only; logic is in demo/.

    python app.py [--host 127.0.0.1] [--port 7860] [--device auto|cpu|cuda] [--weights hf://owner/repo]
                  [--max-queue 64] [--max-output-mb 200]         (settings and environment: demo/server.py)
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from demo.engine.config import GUIDES, LIMITS, NUM_CLASSES  # noqa: E402
from demo.engine.guidance import GUIDANCE, METHODS, uses_guide  # noqa: E402
from demo.engine.pipeline import RequestError  # noqa: E402
from demo.science import findings as measured
from demo.serving import outputs as files
from demo.serving import server
from demo.serving import service as svc  # noqa: E402
from demo.serving.compute import on_compute_thread  # noqa: E402
from demo.serving.compute import on_device as gpu  # noqa: E402   handlers that use the models (ZeroGPU: demo/compute.py)
from demo.toy import lab as toy_lab
from demo.toy.mixture import PRESETS as TOY_PRESETS  # noqa: E402
from demo.ui import views  # noqa: E402
from demo.ui.prose import CONVENTION, EXPLANATION, HEADER, SWEEP_INTRO, TOY_INTRO  # noqa: E402

ROOT = Path(__file__).resolve().parent
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
OUT_DIR = Path(tempfile.gettempdir()) / "guidance_lab"
YIELD_EVERY = 0.5          # seconds between no-change yields of a long run (Stop acts at the next one)
SERVICE: svc.Service | None = None
# Sampling handlers only wait on the scheduler (demo/scheduler.py), which batches everyone's steps: they run
# concurrently, without a limit of their own (the queue, --max-queue, bounds them). The 2-D lab keeps the default limit of 1.
SAMPLING = dict(concurrency_limit=None)
LADDER_MAX_COST = 1.5      # the w ladder is sampled for comparisons up to this many default comparisons
TOY_LAB = toy_lab.ToyLab()
GUIDED = METHODS[1:]
SLIDER_MAX = 10.0          # the sliders' range of w (the API accepts up to LIMITS.max_weight)
DEFAULTS = dict(label=3, mode="own", weight=1.0, num_steps=32, sampler="ddim", num_samples=8, seed=0,
                sigma_lo=0.0, sigma_hi=80.0)
TOY_DEFAULT = (list(TOY_PRESETS)[1], 0, 3.0, 100, 500, 0, False, 70)
PICK_JS = """element.addEventListener('click', (event) => {
  const cell = event.target.closest('[data-sample]');
  if (!cell) return;
  element.querySelectorAll('.gl-selected').forEach((c) => c.classList.remove('gl-selected'));
  cell.classList.add('gl-selected');
  trigger('click', {sample: Number(cell.dataset.sample)});
});"""
OUTDATED_JS = "() => { document.querySelector('#comparison')?.classList.add('gl-outdated'); }"
CURRENT_JS = "() => { document.querySelector('#comparison')?.classList.remove('gl-outdated'); }"


def _service() -> svc.Service:
    if SERVICE is None:
        raise gr.Error("The models are not loaded yet.")
    return SERVICE


def _user_errors(parse, *values):
    """parse(*values), with a user's mistake turned into one clear message in the UI."""
    try:
        return parse(*values)
    except RequestError as error:
        raise gr.Error(str(error)) from None


def _follow(live: svc.Live, progress, desc: str, num_outputs: int):
    """Drive a live computation: progress bar per step, and a no-change yield (gr.skip) at most every
    YIELD_EVERY seconds so that Stop can end it between steps. Afterwards live.result holds the result."""
    last = time.perf_counter()
    for done, total in live:
        progress((done, total), desc=desc)
        if time.perf_counter() - last > YIELD_EVERY:
            last = time.perf_counter()
            yield (gr.skip(),) * num_outputs


def _settings(label, mode, weight, *values):
    """The Compare widgets in `settings` order: label, mode, w, one w per guided method, the guide, then
    steps, sampler, samples, seed and the interval."""
    method_weights, (guide, *rest) = values[:len(GUIDED)], values[len(GUIDED):]
    return _user_errors(lambda: svc.parse_settings(label, mode, weight, method_weights, *rest, guide=guide))


GUIDE_INFO = "the weaker network autoguidance steers away from (How it works: what each guide shows)"


def _guides_installed() -> set[str]:
    """Guide keys the loaded weights offer (all of config.GUIDES before the models are attached)."""
    if SERVICE is None:
        return {g.key for g in GUIDES}
    return {GUIDES[0].key, *SERVICE.models.guides}


def _beyond_range(weights: dict[str, float], guide: str = GUIDES[0].key) -> str:
    """A plain warning for every method used past the w where it measurably degrades (autoguidance: with the
    chosen guide)."""
    notes = []
    for method, w in weights.items():
        hint = measured.method_range(method, guide)
        if hint and hint.degrades_beyond is not None and w > hint.degrades_beyond:
            with_guide = " with this guide" if uses_guide(method) else ""
            notes.append(f"{GUIDANCE[method].title}{with_guide} at w = {w:g} is past w ≈ "
                         f"{hint.degrades_beyond:.2g}, where it degrades with this model.")
    return " ".join(notes)


def _hint(method: str, guide: str | None = None) -> str | None:
    """The measured usable range of a method's w, short enough for a slider's caption."""
    hint = measured.method_range(method, guide)
    if hint is None:
        return None
    degrades = f"degrades beyond ≈ {hint.degrades_beyond:.2g}" if hint.degrades_beyond is not None else \
        f"fine up to {hint.evaluated_up_to:g}"
    return f"best FID at {hint.best_weight:g}; {degrades}"


# ---- handlers: widget values in, displayable values out -------------------------------------------------

@gpu
def on_compare(*values, progress=gr.Progress()):
    """Every method with the same seed, sampled together (or straight from the cache: the w ladder)."""
    *settings, follow = values
    base, weights = _settings(*settings)
    service = _service()
    live = service.compare_live(base, METHODS, weights)
    yield from _follow(live, progress, "sampling every method together", 4)
    results = live.result
    follow = min(max(int(follow or 0), 0), base.num_samples - 1)
    picture = views.comparison_html(results.runs, follow, _beyond_range(weights, base.guide),
                                    service.runs_computed)
    status = f"**{views.settings_line(base, weights, short=True)}** · {views.timing(results)}"
    name = f"guidance_lab_class{base.label}_seed{base.seed}.png"
    yield picture, views.summary(results), status, files.save_file(views.comparison_grid(results), OUT_DIR, name)


@gpu
def on_ladder(*settings):
    """Sample the w ladder of every guided method in the background (steps run only while no visitor waits
    for a result), so that moving w along it is instant."""
    base, weights = _settings(*settings)
    service = _service()
    size = svc.cost(svc.comparison_requests(base, METHODS, weights)) / svc.REFERENCE_COST
    if size > LADDER_MAX_COST:           # the ladder costs ~15 comparisons: only for default-sized settings
        yield (f"No w ladder for settings this large ({size:.1f}x a default comparison): each w change samples. "
               f"Fewer samples or steps bring it back.")
        return
    live = service.sweep_live(base, GUIDED, svc.LADDER, background=True)
    missing = service.missing(svc.sweep_requests(base, GUIDED, svc.LADDER))
    if missing:
        last = 0.0
        for done, total in live:
            if time.perf_counter() - last > YIELD_EVERY:
                last = time.perf_counter()
                yield f"Sampling the w ladder for instant w … step {done} of {total} ({missing} runs)"
    else:
        live.run()
    yield ("w ladder ready: moving w to " + ", ".join(f"{w:g}" for w in svc.LADDER) +
           " shows the result at once; other values are sampled.")


@gpu
def on_trajectory(*values, progress=gr.Progress()):
    """Filmstrip, GIF and per-step plots of the followed sample (recomputed if not cached: same seed, same
    result)."""
    *settings, follow = values
    base, weights = _settings(*settings)
    live = _service().compare_live(base, METHODS, weights)
    yield from _follow(live, progress, "sampling every method together", 3)
    runs = live.result.runs
    index = min(max(int(follow or 0), 0), base.num_samples - 1)
    gif = files.save_file(views.animation(runs, index), OUT_DIR, "denoising.gif")
    yield views.filmstrip_html(runs, index), gif, views.step_plots(runs, index)


def on_pick(follow, event: gr.EventData):
    """A click on a digit of the comparison: follow that sample."""
    sample = getattr(event, "_data", None) or {}
    return int(sample.get("sample", follow)) if isinstance(sample, dict) else follow


def on_mode(mode):
    return gr.update(visible=mode == "same"), gr.update(visible=mode == "own")


def on_guide(guide):
    """The guided methods' range captions follow the chosen guide."""
    return [gr.update(info=_hint(m, guide) or "not measured with this guide") for m in GUIDED]


def on_stop():
    return "Stopped. The picture shows the last finished result."


@gpu
def on_sweep(label, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi, progress=gr.Progress()):
    base = _user_errors(svc.parse_request, label, 0.0, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi)
    live = _service().sweep_live(base)
    yield from _follow(live, progress, "w sweep: every method and w together", 2)
    yield views.sweep_html(live.result), views.sweep_tradeoff(live.result)


@on_compute_thread
def on_toy(preset, label, weight, num_steps, num_samples, seed, show_field, field_step, progress=gr.Progress()):
    """The exact 2-D lab: sample every method on the analytic mixture (step by step: Stop ends it) and draw it."""
    request = _user_errors(toy_lab.parse_toy, preset, label, weight, num_steps, num_samples, seed)
    live = TOY_LAB.run_live(request)
    yield from _follow(live, progress, "sampling every method on the exact mixture", 2)
    result = live.result
    timing = "from cache" if result.from_cache else f"sampled in {result.seconds:.2f} s"
    yield (toy_lab.figure(result, int(field_step) if show_field else None),
           f"{toy_lab.moments_table(result)}\n\nAll {len(result.paths)} methods: {timing}.")


def on_toy_preset(preset, label):
    """The class picker offers the classes of the chosen mixture."""
    choices = toy_lab.classes(preset) if preset in toy_lab.PRESETS else [0]
    return gr.Radio(choices=choices, value=label if label in choices else choices[0])


def prepare(service: svc.Service) -> None:
    """Sample the default comparison before the first visitor arrives, so the page opens on a result."""
    base, weights = svc.parse_settings(DEFAULTS["label"], DEFAULTS["mode"], DEFAULTS["weight"],
                                      [measured.default_weight(m) for m in GUIDED], DEFAULTS["num_steps"],
                                      DEFAULTS["sampler"], DEFAULTS["num_samples"], DEFAULTS["seed"])
    service.compare(base, METHODS, weights)


# ---- layout ---------------------------------------------------------------------------------------------

def build() -> gr.Blocks:
    with gr.Blocks(title="Guidance Lab", fill_width=True) as blocks:
        gr.Markdown(HEADER, elem_id="header")
        with gr.Tab("Compare"):
            with gr.Row(elem_id="compare-row"):
                with gr.Column(scale=0, min_width=300, elem_id="controls"):
                    label = gr.Radio([(str(k), k) for k in range(NUM_CLASSES)], value=DEFAULTS["label"],
                                     label="Digit to generate", elem_id="digit")
                    with gr.Row(elem_id="buttons"):
                        generate = gr.Button("Generate", variant="primary", elem_id="generate", min_width=80)
                        stop = gr.Button("Stop", variant="stop", elem_id="stop", min_width=60, scale=0)
                    mode = gr.Radio([("same w for all", "same"), ("each at its own w", "own")],
                                    value=DEFAULTS["mode"], label="Guidance weight", elem_id="mode")
                    with gr.Group(visible=DEFAULTS["mode"] == "same") as same_group:
                        weight = gr.Slider(0, SLIDER_MAX, value=DEFAULTS["weight"], step=0.25,
                                           label="w (all methods)", info="0 = unguided, for every method",
                                           elem_id="weight")
                    with gr.Group(visible=DEFAULTS["mode"] == "own", elem_id="own-weights") as own_group:
                        method_weights = [
                            gr.Slider(0, SLIDER_MAX, value=measured.default_weight(m), step=0.25,
                                      label=f"w · {GUIDANCE[m].short_title}", info=_hint(m),
                                      elem_id=f"weight-{m}") for m in GUIDED]
                    guide = gr.Dropdown([(g.label, g.key) for g in GUIDES if g.key in _guides_installed()],
                                        value=GUIDES[0].key, label="Autoguidance's guide D_weak",
                                        info=GUIDE_INFO, elem_id="guide")
                    ladder_status = gr.Markdown(elem_id="ladder-status")
                    with gr.Accordion("Settings: seed, samples, steps, interval", open=False):
                        with gr.Row():
                            seed = gr.Number(value=DEFAULTS["seed"], precision=0, minimum=0, maximum=LIMITS.max_seed,
                                             label="Seed", min_width=120)
                            dice = gr.Button("🎲 New seed", size="sm", min_width=100)
                        num_samples = gr.Slider(1, LIMITS.max_samples, value=DEFAULTS["num_samples"], step=1,
                                                label="Samples per method")
                        num_steps = gr.Slider(1, LIMITS.max_steps, value=DEFAULTS["num_steps"], step=1, label="Steps")
                        sampler = gr.Radio([("DDIM (deterministic)", "ddim"), ("Ancestral (stochastic)", "ancestral"),
                                            ("DPM-Solver++(2M) (16 steps are enough)", "dpmpp_2m")],
                                           value=DEFAULTS["sampler"], label="Sampler")
                        gr.Markdown("Guidance interval (Kynkäänniemi et al. 2024): guide only while "
                                    "σ_lo < σ ≤ σ_hi. Noise runs from σ = 80 down to 0.002.")
                        with gr.Row():
                            sigma_lo = gr.Number(value=DEFAULTS["sigma_lo"], label="σ_lo", min_width=100)
                            sigma_hi = gr.Number(value=DEFAULTS["sigma_hi"], label="σ_hi", min_width=100)
                    with gr.Accordion("The convention for w", open=False):
                        gr.Markdown(CONVENTION, latex_delimiters=LATEX)
                with gr.Column(scale=1, elem_id="results"):
                    status = gr.Markdown(elem_id="status")
                    comparison = gr.HTML(elem_id="comparison", js_on_load=PICK_JS, padding=False)
                    summary = gr.Markdown(elem_id="summary")
                    download = gr.DownloadButton("Download the comparison (PNG)", size="sm", variant="secondary",
                                                 elem_id="download")
            follow = gr.State(0)
            with gr.Accordion("Per-step trajectories of the selected sample (click a digit above)", open=True):
                filmstrip = gr.HTML(elem_id="filmstrip", padding=False)
                gif = gr.Image(show_label=False, type="filepath", elem_id="gif", container=False, buttons=[])
                plots = gr.Plot(show_label=False, elem_id="step-plots")
        with gr.Tab("w sweep") as sweep_tab:
            gr.Markdown(SWEEP_INTRO.format(weights=", ".join(f"{w:g}" for w in svc.SWEEP_WEIGHTS)))
            with gr.Row():
                sweep_button = gr.Button("Run the sweep", variant="primary")
                sweep_stop = gr.Button("Stop", variant="stop")
            sweep_grid = gr.HTML(elem_id="sweep", padding=False)
            sweep_plot = gr.Plot(show_label=False)
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
        with gr.Tab("2-D exact lab"):
            gr.Markdown(TOY_INTRO, latex_delimiters=LATEX)
            with gr.Row():
                with gr.Column(scale=0, min_width=280):
                    toy_preset = gr.Dropdown(list(TOY_PRESETS), value=TOY_DEFAULT[0], label="Mixture")
                    toy_label = gr.Radio(toy_lab.classes(TOY_DEFAULT[0]), value=TOY_DEFAULT[1], label="Class")
                    toy_weight = gr.Slider(0, LIMITS.max_weight, value=TOY_DEFAULT[2], step=0.1,
                                           label="Guidance weight w")
                    toy_steps = gr.Slider(1, LIMITS.max_steps, value=TOY_DEFAULT[3], step=1, label="Steps")
                    toy_samples = gr.Slider(10, LIMITS.max_toy_points, value=TOY_DEFAULT[4], step=10, label="Points")
                    toy_seed = gr.Number(value=TOY_DEFAULT[5], precision=0, minimum=0, label="Seed")
                    toy_field = gr.Checkbox(value=TOY_DEFAULT[6], label="Show the guidance vector field w·Δ")
                    toy_field_step = gr.Slider(0, 999, value=TOY_DEFAULT[7], step=1,
                                               label="… at step (noise decreases →)")
                    with gr.Row(elem_classes="buttons"):
                        toy_button = gr.Button("Sample", variant="primary", min_width=80)
                        toy_stop = gr.Button("Stop", variant="stop", min_width=60, scale=0)
                with gr.Column(scale=1):
                    toy_plot = gr.Plot(show_label=False, elem_id="toy-plot")
                    toy_table = gr.Markdown()
        with gr.Tab("How it works"):
            gr.Markdown(EXPLANATION, latex_delimiters=LATEX)

        settings = [label, mode, weight, *method_weights, guide, num_steps, sampler, num_samples, seed, sigma_lo,
                    sigma_hi]
        outputs = [comparison, summary, status, download]
        trajectory = [filmstrip, gif, plots]
        compare_triggers = [blocks.load, generate.click, label.change, mode.change, weight.change, guide.change,
                            *(w.change for w in method_weights)]
        compare_event = gr.on(compare_triggers, on_compare, [*settings, follow], outputs, api_name="compare",
                              trigger_mode="always_last", show_progress="minimal", **SAMPLING)
        compare_event.success(None, js=CURRENT_JS)
        ladder_event = compare_event.success(on_ladder, settings, ladder_status, show_progress="hidden",
                                             api_visibility="private", **SAMPLING)
        trajectory_event = compare_event.success(on_trajectory, [*settings, follow], trajectory,
                                                 api_name="trajectory", show_progress="minimal", **SAMPLING)
        gr.on([generate.click, label.change, mode.change, weight.change, guide.change,
               *(w.change for w in method_weights)],
              None, cancels=[ladder_event], api_visibility="private")
        pick_event = comparison.click(on_pick, follow, follow, api_visibility="private")
        pick_event.then(on_trajectory, [*settings, follow], trajectory, api_visibility="private",
                        show_progress="minimal", **SAMPLING)
        mode.change(on_mode, mode, [same_group, own_group], api_visibility="private")
        guide.change(on_guide, guide, method_weights, api_visibility="private", queue=False)
        for widget in (num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi):
            widget.change(None, js=OUTDATED_JS)
        stop.click(on_stop, None, status, cancels=[compare_event, ladder_event, trajectory_event],
                   api_visibility="private")
        dice.click(lambda: random.randint(0, LIMITS.max_seed), None, seed, api_visibility="private").then(
            on_compare, [*settings, follow], outputs, api_visibility="private", show_progress="minimal", **SAMPLING)

        toy_inputs = [toy_preset, toy_label, toy_weight, toy_steps, toy_samples, toy_seed, toy_field, toy_field_step]
        toy_event = gr.on([blocks.load, toy_button.click, toy_weight.release, toy_label.input, toy_field.change,
                           toy_field_step.release], on_toy, toy_inputs, [toy_plot, toy_table], api_name="toy")
        preset_event = toy_preset.change(on_toy_preset, [toy_preset, toy_label], toy_label,
                                         api_visibility="private").then(on_toy, toy_inputs, [toy_plot, toy_table],
                                                                        api_visibility="private")
        toy_stop.click(None, cancels=[toy_event, preset_event], api_visibility="private")
        sweep_inputs = [label, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi]
        sweep_event = sweep_button.click(on_sweep, sweep_inputs, [sweep_grid, sweep_plot], api_name="sweep",
                                         **SAMPLING)
        sweep_shown = sweep_tab.select(on_sweep, sweep_inputs, [sweep_grid, sweep_plot], api_visibility="private",
                                       **SAMPLING)
        sweep_stop.click(None, cancels=[sweep_event, sweep_shown], api_visibility="private")
    return blocks


def attach(service: svc.Service, out_dir: Path) -> None:
    """The loaded models and this run's private output folder, for the handlers (demo/server.py calls it)."""
    global SERVICE, OUT_DIR
    SERVICE, OUT_DIR = service, out_dir
    TOY_LAB.budget = service.budget


def main() -> None:
    """Settings, checks, weights, device and the start-up block: demo/server.py."""
    server.main(server.AppParts(serve=serve, prepare=prepare, attach=attach))


def serve(host: str = "127.0.0.1", port: int = 7860, block: bool = True, max_queue: int = server.MAX_QUEUE
          ) -> gr.Blocks:
    """Build the UI and start the server (returns once it accepts connections if block is False)."""
    return server.launch(build(), host, port, block=block, max_queue=max_queue, theme=gr.themes.Soft(), css=CSS,
                         footer_links=["gradio"])


CSS = (ROOT / "assets" / "style.css").read_text()

if __name__ == "__main__":
    main()
