"""Which face gallery a request uses: the visitor's own (keyed by Gradio's session), or the operator's shared one.

A browser session's gallery is deleted when the tab closes (the app registers :func:`end_session` with
``demo.unload``), an API client's after an idle hour (a sweep every few minutes), all of them when the app
stops, and whatever a killed run left behind at the next start (:class:`core.faces.gallery.Galleries`).
Faces are biometric data.
"""

from __future__ import annotations

import atexit
import threading

import gradio as gr

from core.faces.gallery import Galleries, GalleryStore

#: How long an unused per-session gallery is kept, and how often that is checked.
MAX_IDLE_S = 3600.0
SWEEP_EVERY_S = 300.0

_galleries: Galleries | None = None
_lock = threading.Lock()
_sweeper: threading.Timer | None = None


def use_shared_gallery(path) -> None:
    """The app's ``--gallery PATH``: one persistent gallery for every visitor (None: one per session)."""
    global _galleries
    with _lock:
        _galleries = Galleries(shared=path) if path is not None else None


def galleries() -> Galleries:
    global _galleries
    with _lock:
        if _galleries is None:
            _galleries = Galleries(max_idle_s=MAX_IDLE_S)
            atexit.register(_galleries.end_all)  # a clean stop leaves no face behind either
            _start_sweeper()
        return _galleries


def is_shared() -> bool:
    return galleries().shared is not None


def gallery_for(request: gr.Request | None) -> GalleryStore:
    """The gallery of the visitor who sent ``request``."""
    return galleries().store(getattr(request, "session_hash", None))


def end_session(request: gr.Request) -> None:
    """``demo.unload``: the visitor closed or reloaded the tab, so their gallery goes now."""
    galleries().end(getattr(request, "session_hash", None))


def _start_sweeper() -> None:
    """One daemon timer per process, sweeping whichever per-session galleries are current."""
    global _sweeper

    def sweep() -> None:
        global _sweeper
        current = _galleries
        if current is not None and current.shared is None:
            current.sweep_idle()
        _sweeper = threading.Timer(SWEEP_EVERY_S, sweep)
        _sweeper.daemon = True
        _sweeper.start()

    if _sweeper is None:
        sweep()
