"""Faster engines built where no visitor's request runs: in a child process of the app.

``torch.export``, the tracing behind Inductor and OpenVINO's converter, switches process-wide dispatch state
(fake tensors, functionalisation) while it runs. In the serving process, an eager request in another thread then
fails (``.numpy() is not supported for tensor subclasses``) and so does the export (``AssertionError`` in fake
mode): issue 36. So :func:`build_in_child` runs :func:`core.engines.prepare` (export, convert, compile, time,
choose) in a child process, which leaves the converted model and the choice in the engine cache
(``core.engines.cache_dir``) and exits; the serving process then only loads them
(``core.engines.load_prepared``).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

from core import engines, runtime
from weights.registry import create

#: One build at a time: two would halve each other's cores and timings. Only the app's preparing threads wait
#: on it, never a request.
_one_at_a_time = threading.Lock()
#: A fresh interpreter that imports the library alone: not forked (a fork copies the serving threads
#: mid-flight), and not multiprocessing's spawn, which would import the app's main module (Gradio and every panel,
#: some 5 s of CPU) into each child.
_CHILD = "from weights.engine_builds import child_main; child_main()"
_REPO = Path(__file__).resolve().parents[1]


class BuildFailed(RuntimeError):
    """The child process that builds a model's engines exited with an error (its traceback is in the log)."""


def build_in_child(name: str, settings: runtime.Settings) -> None:
    """Prepare ``name``'s engine as ``settings`` ask (``core.engines.prepare``) in a child process, and wait
    for it; its log goes to the app's."""
    command = [sys.executable, "-c", _CHILD, name, str(os.getpid())]
    with _one_at_a_time:
        done = subprocess.run(command, input=pickle.dumps(settings), cwd=_REPO, check=False)
    if done.returncode != 0:
        raise BuildFailed(f"{name}: building its engines failed in a child process (exit status {done.returncode})")


def child_main() -> None:
    """The child: ``argv`` is (model name, the app's pid), stdin the app's pickled settings; the model is built as
    the app builds it, then prepared, and what that makes stays in the cache."""
    name, parent = sys.argv[1], int(sys.argv[2])
    _exit_with(parent)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s (engine build): %(message)s")
    settings = runtime.use(pickle.load(sys.stdin.buffer))
    engines.prepare(name, create(name, device=runtime.pick_device()), settings.runtime, settings.engines)


def _exit_with(parent: int) -> None:
    """End this child when the app ends (stopped by a signal, it runs no clean-up that would): a build
    left running would hold the host's cores for minutes."""
    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-the-app", daemon=True).start()
