"""The computer-vision demo hub: one Gradio app, a tab per task of "Beyond classification and detection".

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--device auto|cpu|cuda]
                  [--weights-dir DIR] [--max-batch-size N]

No model is loaded at start: each panel loads its model on first use.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import threading

import gradio as gr
from gradio.route_utils import delete_files_created_by_app

import weights
from core import runtime
from core.errors import UserError
from spaces import about, common, privacy
from spaces.face_galleries import use_shared_gallery

#: The panels, in tab order. Each module has TITLE, SUMMARY (one line for the About tab) and build().
PANEL_MODULES = (
    "spaces.segmentation",
    "spaces.lab",
    "spaces.instances",
    "spaces.faces",
    "spaces.style",
    "spaces.visualize",
)


def panels():
    return [importlib.import_module(name) for name in PANEL_MODULES]


def build_app() -> gr.Blocks:
    common.atomic_result_cache()  # 50 users getting the same picture must not rewrite it while it downloads
    modules = panels()
    with gr.Blocks(title="Beyond classification and detection — demo hub",
                   delete_cache=(privacy.CACHE_SWEEP_S, privacy.CACHE_MAX_AGE_S)) as demo:
        gr.Markdown(
            "# Beyond classification and detection\n"
            "Interactive demos of the lecture: segmentation, instances, faces, style transfer and what networks learn."
        )
        with gr.Tabs():
            for module in modules:
                with gr.Tab(module.TITLE, id=module.__name__.split(".")[-1]):
                    module.build()
            with gr.Tab(about.TITLE, id="about"):
                about.build(modules)
        for module in modules:
            if hasattr(module, "unload"):  # a closed tab: what the panel kept for that session goes (faces)
                demo.unload(module.unload)
    # Queue on: long jobs wait their turn instead of timing out; cheap per-image handlers
    # are declared with batch=True so a GPU host serves many users per forward pass.
    demo.queue(default_concurrency_limit=runtime.settings().concurrency)
    return demo


def prepare_engines_in_background() -> threading.Thread:
    """Convert and time the faster engines (core.engines) of the models that have some, off the request path (in a
    child process, weights.engine_builds): the first visitors are served by PyTorch fp32 meanwhile, and each panel
    says which engine served it."""
    names = [n for n in weights.list_models() if weights.get_record(n).engines]
    thread = threading.Thread(target=weights.prepare_engines, args=(names,), name="prepare-engines", daemon=True)
    thread.start()
    return thread


def stop_cleanly_on_sigterm() -> None:
    """Make SIGTERM stop the app as Ctrl+C does. Spaces and containers stop an app with SIGTERM, whose default ends
    the process at once: the visitors' uploads and results would stay in Gradio's temp folder (served by the next
    instance) and their session galleries on disk. As a KeyboardInterrupt in the main thread it takes Ctrl+C's
    path: Gradio closes its server, which deletes every file it cached, and atexit deletes the galleries."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    runtime.add_arguments(parser)
    parser.add_argument("--max-batch-size", type=int, default=None,
                        help="requests merged into one forward pass by batched handlers "
                             "(default: CVHUB_MAX_BATCH_SIZE, else 8)")
    parser.add_argument("--gallery", default=None,
                        help="one face gallery (SQLite file) shared by every visitor (default: CVHUB_GALLERY, "
                             "else one per browser session)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="jobs of one event run at once; the queue holds the rest (default: CVHUB_CONCURRENCY, "
                             "else 2)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # The operator's log says which engine each model got, and why one did not (core.engines, weights).
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    for name in ("core", "weights"):
        logging.getLogger(name).setLevel(logging.INFO)
    settings = runtime.use(runtime.Settings.from_args(args))
    if settings.gallery:
        try:
            use_shared_gallery(settings.gallery)
        except UserError as exc:
            raise SystemExit(f"--gallery {settings.gallery}: {exc}") from None
    demo = build_app()
    stop_cleanly_on_sigterm()
    prepare_engines_in_background()
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                    max_file_size=f"{privacy.MAX_UPLOAD_MB}mb")
    finally:
        # Gradio deletes the files it cached (uploads, results) when its server shuts down, but that shutdown waits
        # for open connections (each open tab and API client keeps one) and launch gives up on it after 5 s, so
        # they would stay: delete them here, as Gradio would.
        delete_files_created_by_app(demo, age=None)


if __name__ == "__main__":
    main()
