"""Faster engines built where no visitor's request runs: in a child process of the app.

``torch.export``, the tracing behind Inductor and OpenVINO's converter, switches process-wide dispatch state
(fake tensors, functionalisation) while it runs. In the serving process, an eager request in another thread then
fails (``.numpy() is not supported for tensor subclasses``) and so does the export (``AssertionError`` in fake
mode): issue 36. So :func:`build_in_child` runs :func:`core.engines.prepare` (export, convert, compile, time,
choose) in a spawned child, which leaves the converted model and the choice in the engine cache
(``core.engines.cache_dir``) and exits; the serving process then only loads them
(``core.engines.load_prepared``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time

from core import engines, runtime
from weights.registry import create

#: One build at a time: two would halve each other's cores and timings. Only the app's preparing threads wait
#: on it, never a request.
_one_at_a_time = threading.Lock()


class BuildFailed(RuntimeError):
    """The child process that builds a model's engines exited with an error (its traceback is in the log)."""


def build_in_child(name: str, settings: runtime.Settings) -> None:
    """Prepare ``name``'s engine as ``settings.runtime`` asks (``core.engines.prepare``) in a spawned child
    process, and wait for it. Spawned, not forked: a fork would copy the serving threads mid-flight."""
    child = multiprocessing.get_context("spawn").Process(
        target=_build, args=(name, settings, os.getpid()), name=f"engines-{name}")
    with _one_at_a_time:
        child.start()
        child.join()
    if child.exitcode != 0:
        raise BuildFailed(f"{name}: building its engines failed in a child process (exit status {child.exitcode})")


def _build(name: str, settings: runtime.Settings, parent: int) -> None:
    """The child: the model built as the app builds it, then prepared; what it makes stays in the cache."""
    _exit_with(parent)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s (engine build): %(message)s")
    runtime.use(settings)
    engines.prepare(name, create(name, device=runtime.pick_device()), settings.runtime, settings.engines)


def _exit_with(parent: int) -> None:
    """End this child when the app ends (stopped by a signal, it runs no clean-up that would): a build
    left running would hold the host's cores for minutes."""
    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-the-app", daemon=True).start()
