"""Guidance Lab: compare guidance methods side by side, same seed. This file composes the tabs (demo/ui) and hands
them to the server's start-up (demo/serving/server.py: settings, checks, weights, device, launch).

    python app.py [--host 127.0.0.1] [--port 7860] [--device auto|cpu|cuda] [--weights hf://owner/repo]
                  [--max-queue 64] [--max-output-mb 200] [--budget 8]
"""
from __future__ import annotations

import os

from demo.serving.settings import quiet_network

quiet_network(os.environ)      # no analytics, no telemetry, offline unless the weights come from the Hub

from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from demo.engine.config import ASSETS_DIR  # noqa: E402
from demo.serving import server  # noqa: E402
from demo.serving.service import Service  # noqa: E402
from demo.ui import compare_tab, explain_tab, lesson_views, lessons_tab, page, sweep_tab, toy_tab  # noqa: E402
from demo.ui.common import Runtime  # noqa: E402
from demo.ui.prose import HEADER  # noqa: E402

CSS = (ASSETS_DIR / "style.css").read_text()


def build() -> gr.Blocks:
    """The page: a header and the four tabs (the Compare tab's widgets also drive the w sweep)."""
    with gr.Blocks(title="Guidance Lab", fill_width=True) as blocks:
        gr.Markdown(HEADER, elem_id="header")
        with gr.Tabs() as tabs:
            compare = compare_tab.tab()
            sweep_after = sweep_tab.tab(compare)
            toy_tab.tab(blocks, compare["link_open"])
            lessons_tab.tab()
            explain_tab.tab()
        sweep_after(compare_tab.wire(blocks, compare, tabs))
    return blocks


def attach(service: Service, out_dir: Path, weights_folder: Path | None = None, settings=None) -> None:
    """The loaded models, this run's private output folder, where the weights came from and the settings, for
    the handlers (the server calls it)."""
    Runtime.service, Runtime.out_dir, Runtime.weights_folder = service, out_dir, weights_folder
    Runtime.previews = True if settings is None else settings.previews
    toy_tab.TOY_LAB.budget = service.budget


def serve(host: str = "127.0.0.1", port: int = 7860, block: bool = True, max_queue: int = server.MAX_QUEUE
          ) -> gr.Blocks:
    """Build the UI and start the server (returns once it accepts connections if block is False)."""
    return server.launch(build(), host, port, block=block, max_queue=max_queue, theme=page.theme(), css=CSS,
                         head=page.head(), footer_links=["gradio"])


def prepare(service: Service) -> None:
    """Before the first visitor (server.start): sample the default comparison; then start computing every lesson's
    view in the background (a daemon thread; it samples only while no visitor's request waits)."""
    compare_tab.prepare(service)
    lesson_views.warm(service, toy_tab.TOY_LAB, Runtime.weights_folder)


def main() -> None:
    server.main(server.AppParts(serve=serve, prepare=prepare, attach=attach))


if __name__ == "__main__":
    main()
