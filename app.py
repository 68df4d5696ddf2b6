"""Guidance Lab: compare guidance methods side by side, same seed. Layout and wiring only; logic is in demo/.

    python app.py [--host 127.0.0.1] [--port 7860] [--device cpu|cuda]     (env: GUIDANCE_LAB_HOST / _PORT)
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
from dataclasses import replace  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from demo import explorer as ex  # noqa: E402
from demo import files, toy_lab, views  # noqa: E402
from demo.checkpoints import WEIGHTS_DIR  # noqa: E402
from demo.compute import COMPUTE, on_compute_thread  # noqa: E402
from demo.config import CLASS_NAMES, LIMITS  # noqa: E402
from demo.guidance import GUIDANCE, METHODS  # noqa: E402
from demo.pipeline import Models, Request, RequestError  # noqa: E402
from demo.text import CONVENTION, EXPLANATION, INTRO, TOY_INTRO  # noqa: E402
from demo.toy import PRESETS as TOY_PRESETS  # noqa: E402

try:                                    # Hugging Face ZeroGPU; a no-op decorator everywhere else
    import spaces
    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
OUT_DIR = Path(tempfile.gettempdir()) / "guidance_lab"
YIELD_EVERY = 0.5          # seconds between no-change yields of a long run (Stop acts at the next one)
EXPLORER: ex.Explorer | None = None
TOY_LAB = toy_lab.ToyLab()


def _explorer() -> ex.Explorer:
    if EXPLORER is None:
        raise gr.Error("The models are not loaded yet.")
    return EXPLORER


def _request(*values) -> Request:
    try:
        return ex.parse_request(*values)
    except RequestError as error:
        raise gr.Error(str(error)) from None


# ---- handlers: widget values in, displayable values out -------------------------------------------------

def _follow(live: ex.Live, progress, desc: str, num_outputs: int):
    """Drive a live computation: progress bar per step, and a no-change yield (gr.skip) at most every
    YIELD_EVERY seconds so that Stop can end it between steps. Afterwards live.result holds the result."""
    last = time.perf_counter()
    for done, total in live:
        progress((done, total), desc=desc)
        if time.perf_counter() - last > YIELD_EVERY:
            last = time.perf_counter()
            yield (gr.skip(),) * num_outputs


@gpu
@on_compute_thread
def on_compare(label, weight, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi,
               progress=gr.Progress()):
    """Sample every method with the same seed, all together (one batched network call per step)."""
    base = _request(label, weight, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi)
    progress(0, desc="sampling")
    live = _explorer().compare_live(base)
    yield from _follow(live, progress, "sampling all methods together", 8)
    results = live.result
    galleries = [[(files.save_png(image, OUT_DIR), caption) for image, caption in views.gallery(run)]
                 for run in results.runs.values()]
    name = f"guidance_lab_class{base.label}_w{base.weight:g}_seed{base.seed}.png"
    yield *galleries, views.summary(results), files.save_png(views.comparison_grid(results), OUT_DIR, name), base


@on_compute_thread
def on_trajectory(base, index):
    """Filmstrip, GIF and per-step plots of one sample; reads the cache, recomputes nothing."""
    if base is None:
        raise gr.Error("Generate a comparison first.")
    runs = {m: _explorer().cached(replace(base, method=m)) for m in METHODS}
    if any(run is None for run in runs.values()):
        raise gr.Error("That comparison is no longer cached: press Generate again.")
    index = min(max(int(index), 0), base.num_samples - 1)
    gif = files.save_file(views.animation(runs, index), OUT_DIR, "denoising.gif")
    p_plot, norm_plot = views.step_plots(runs, index)
    return files.save_png(views.filmstrip(runs, index), OUT_DIR), gif, p_plot, norm_plot


@gpu
@on_compute_thread
def on_sweep(label, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi, progress=gr.Progress()):
    base = _request(label, 0.0, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi)
    live = _explorer().sweep_live(base)
    yield from _follow(live, progress, "w sweep: every method and w together", 2)
    picture, figure = views.sweep_figures(live.result)
    yield files.save_png(picture, OUT_DIR), figure


@on_compute_thread
def on_toy(preset, label, weight, num_steps, num_samples, seed, show_field, field_step, progress=gr.Progress()):
    """The exact 2-D lab: sample every method on the analytic mixture (step by step: Stop ends it) and draw it."""
    try:
        request = toy_lab.parse_toy(preset, label, weight, num_steps, num_samples, seed)
    except RequestError as error:
        raise gr.Error(str(error)) from None
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


def on_trajectory_slider(num_samples):
    return gr.Slider(maximum=max(0, int(num_samples) - 1), value=0)


# ---- layout ---------------------------------------------------------------------------------------------

def build() -> gr.Blocks:
    with gr.Blocks(title="Guidance Lab", fill_width=True) as blocks:
        gr.Markdown(INTRO)
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    label = gr.Dropdown([(name, k) for k, name in enumerate(CLASS_NAMES)], value=3,
                                        label="Class")
                    weight = gr.Slider(0, LIMITS.max_weight, value=GUIDANCE["cfg"].default_weight, step=0.1,
                                       label="Guidance weight w", info="0 = unguided conditional sampling")
                    num_steps = gr.Slider(1, LIMITS.max_steps, value=32, step=1, label="Steps")
                    sampler = gr.Radio([("DDIM (deterministic)", "ddim"), ("Ancestral (stochastic)", "ancestral")],
                                       value="ddim", label="Sampler")
                    num_samples = gr.Slider(1, LIMITS.max_samples, value=8, step=1, label="Samples per method")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, maximum=LIMITS.max_seed, label="Seed")
                        dice = gr.Button("Random seed", size="sm")
                    with gr.Accordion("Advanced: guidance interval", open=False):
                        gr.Markdown("Guide only while σ_lo < σ ≤ σ_hi (Kynkäänniemi et al. 2024). "
                                    "Noise runs from σ = 80 down to 0.002.")
                        sigma_lo = gr.Number(value=0.0, label="σ_lo")
                        sigma_hi = gr.Number(value=80.0, label="σ_hi")
                    with gr.Row():
                        generate = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Stop", variant="stop")
                    gr.Markdown(CONVENTION, latex_delimiters=LATEX)
                with gr.Column(scale=4):
                    with gr.Row(equal_height=True):
                        galleries = [gr.Gallery(label=GUIDANCE[m].title, columns=2, height=420, format="png",
                                                object_fit="contain", elem_id=f"gallery-{m}", min_width=150)
                                     for m in METHODS]
                    summary = gr.Markdown(elem_id="summary")
                    download = gr.File(label="Download the comparison grid (PNG)", interactive=False)
            base_state = gr.State(None)
            with gr.Accordion("Per-step trajectories", open=True):
                with gr.Row():
                    index = gr.Slider(0, 7, value=0, step=1, label="Sample to follow")
                with gr.Row():
                    strip = gr.Image(label="x_t and x0 estimate at 10 steps", format="png", type="filepath",
                                     elem_id="filmstrip")
                    gif = gr.Image(label="Denoising (animated)", type="filepath")
                with gr.Row():
                    p_plot = gr.Plot(label="p(target | x_t)")
                    norm_plot = gr.Plot(label="guidance norm")
        with gr.Tab("w sweep"):
            gr.Markdown("Samples at w ∈ {" + ", ".join(f"{w:g}" for w in ex.SWEEP_WEIGHTS) + "} for every "
                        "guided method, with the class, seed and settings of the Compare tab, and the trade-off "
                        "between fidelity (mean probability of the target class) and diversity (mean pairwise "
                        "distance of features), both measured with the separate evaluation classifier. "
                        "Broken samples at large w look 'diverse' too: read both axes with the grid.")
            with gr.Row():
                sweep_button = gr.Button("Run the sweep", variant="primary")
                sweep_stop = gr.Button("Stop", variant="stop")
            sweep_grid = gr.Image(label="Samples per method and w", format="png", type="filepath")
            sweep_plot = gr.Plot(label="Fidelity vs diversity")
            measured = views.saved_results()
            if measured is not None:
                with gr.Accordion("Measured trade-offs on the whole model (precomputed)", open=False):
                    table, plot_files = measured
                    gr.Gallery(plot_files, columns=2, height="auto", format="png", label="Evaluation plots")
                    gr.Markdown(table)
        with gr.Tab("2-D exact lab"):
            gr.Markdown(TOY_INTRO, latex_delimiters=LATEX)
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    toy_preset = gr.Dropdown(list(TOY_PRESETS), value=list(TOY_PRESETS)[1], label="Mixture")
                    toy_label = gr.Radio(toy_lab.classes(list(TOY_PRESETS)[1]), value=0, label="Class")
                    toy_weight = gr.Slider(0, LIMITS.max_weight, value=3.0, step=0.1, label="Guidance weight w")
                    toy_steps = gr.Slider(1, 1000, value=100, step=1, label="Steps")
                    toy_samples = gr.Slider(10, LIMITS.max_toy_points, value=500, step=10, label="Points")
                    toy_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                    toy_field = gr.Checkbox(value=False, label="Show the guidance vector field w·Δ")
                    toy_field_step = gr.Slider(0, 999, value=70, step=1, label="… at step (noise decreases →)")
                    with gr.Row():
                        toy_button = gr.Button("Sample", variant="primary")
                        toy_stop = gr.Button("Stop", variant="stop")
                with gr.Column(scale=4):
                    toy_plot = gr.Plot(label="Samples, trajectories and densities")
                    toy_table = gr.Markdown()
        with gr.Tab("How it works"):
            gr.Markdown(EXPLANATION, latex_delimiters=LATEX)

        settings = [label, weight, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi]
        compare_event = gr.on([generate.click, weight.release], on_compare, settings,
                              [*galleries, summary, download, base_state], api_name="compare")
        compare_event.success(on_trajectory_slider, num_samples, index, api_visibility="private").then(
            on_trajectory, [base_state, index], [strip, gif, p_plot, norm_plot], api_name="trajectory")
        index.release(on_trajectory, [base_state, index], [strip, gif, p_plot, norm_plot],
                      api_visibility="private")
        stop.click(None, cancels=[compare_event], api_visibility="private")
        dice.click(lambda: random.randint(0, LIMITS.max_seed), None, seed, api_visibility="private")
        toy_inputs = [toy_preset, toy_label, toy_weight, toy_steps, toy_samples, toy_seed, toy_field, toy_field_step]
        toy_event = gr.on([toy_button.click, toy_weight.release, toy_label.input, toy_field.change,
                           toy_field_step.release], on_toy, toy_inputs, [toy_plot, toy_table], api_name="toy")
        preset_event = toy_preset.change(on_toy_preset, [toy_preset, toy_label], toy_label,
                                         api_visibility="private").then(on_toy, toy_inputs, [toy_plot, toy_table],
                                                                        api_visibility="private")
        toy_stop.click(None, cancels=[toy_event, preset_event], api_visibility="private")
        sweep_event = sweep_button.click(on_sweep, [label, num_steps, sampler, num_samples, seed, sigma_lo, sigma_hi],
                                         [sweep_grid, sweep_plot], api_name="sweep")
        sweep_stop.click(None, cancels=[sweep_event], api_visibility="private")
    return blocks


def main() -> None:
    global EXPLORER
    parser = argparse.ArgumentParser(description="Guidance Lab")
    parser.add_argument("--host", default=os.environ.get("GUIDANCE_LAB_HOST", "127.0.0.1"),
                        help="bind address; 0.0.0.0 to serve a classroom LAN")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GUIDANCE_LAB_PORT", "7860")))
    parser.add_argument("--device", default=os.environ.get("GUIDANCE_LAB_DEVICE", "cpu"))
    args = parser.parse_args()
    folder = Path(os.environ.get("GUIDANCE_LAB_WEIGHTS", str(WEIGHTS_DIR)))   # operator setting, never a request
    try:
        EXPLORER = ex.Explorer(COMPUTE.call(Models.load, folder, device=args.device))   # see demo/compute.py
    except Exception as error:  # a clear start-up message, not a traceback
        raise SystemExit(f"Guidance Lab cannot start: {error}") from None
    serve(args.host, args.port)


def serve(host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> gr.Blocks:
    """Build the UI and start the server (returns once it accepts connections if block is False)."""
    blocks = build().queue(max_size=32, default_concurrency_limit=1)
    blocks.launch(server_name=host, server_port=port, show_error=False, theme=gr.themes.Soft(), css=CSS,
                  footer_links=["gradio"], prevent_thread_lock=not block)
    return blocks


CSS = """
#summary table { font-size: 0.9em; }
.gallery img { image-rendering: pixelated; }
"""

if __name__ == "__main__":
    main()
