"""Shared test fixtures: the repository, and ../shared (weights, CamVid, faces, images) beside it."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import weights
from core import runtime

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Tests run offline: no weight is downloaded or rebuilt from the internet (the app started by `running_app`
# inherits this too). The tests of the download paths lift it for themselves, with stand-in servers on 127.0.0.1.
os.environ["CVHUB_OFFLINE"] = "1"
# The app and the CLIs the tests start serve PyTorch fp32: converting and timing the faster engines at start-up
# would double their run time. tests/test_engines.py checks the engines and the app's way of preparing them.
os.environ["CVHUB_RUNTIME"] = "eager"


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared beside the checkout; CI has it, so its absence is a failure, not a skip."""
    assert SHARED.is_dir(), f"{SHARED} is missing: tests need ../shared beside the checkout"
    return SHARED


@pytest.fixture()
def shared_weights(shared, monkeypatch):
    """Point the resolver at ../shared/weights for this test."""
    monkeypatch.setattr(runtime, "_settings", runtime.Settings.from_env(weights_dir=str(shared / "weights")))
    return shared / "weights"


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on (until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(command: list[str], env: dict[str, str], log) -> tuple[subprocess.Popen, str]:
    """Run ``command`` (the app, plus ``--port`` added here) from the repository on a free port until its page
    answers; -> (the process, its URL). ``log`` takes its output (a file, or subprocess.DEVNULL)."""
    port = free_port()
    proc = subprocess.Popen([*command, "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited during start-up (status {proc.returncode}; see its log)")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise AssertionError("the app did not answer within 120 s") from None
            time.sleep(0.5)


def overlays_agree(path_a: str, path_b: str) -> bool:
    """Whether two segmentation overlays (the panel's PNGs) show the same labels on >= 99 % of their pixels: what
    an engine keeps of fp32's answer (>= 99.5 % of the labels, tests/test_engines.py), with a margin for rounding."""
    a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (path_a, path_b))
    return a.shape == b.shape and (np.abs(a - b).max(axis=2) <= 2).mean() >= 0.99


@pytest.fixture(scope="session")
def running_app(shared):
    """The real app (`python app.py`) on a free port, as a user starts it; yields its URL."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    log = open(REPO / ".pytest_cache" / "app.log", "w") if (REPO / ".pytest_cache").is_dir() else subprocess.DEVNULL
    proc, url = start_app([sys.executable, "app.py", "--device", "cpu", "--weights-dir", str(shared / "weights")],
                          env, log)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture()
def first_fetch(monkeypatch):
    """Every model looks absent, so a load announces a fetch; the fetch reports 20 of 40 MB (the real load follows).
    Yields (toasts, progress reports, a progress tracker to hand the handler)."""
    toasts, reports = [], []

    @contextlib.contextmanager
    def fetching(report):
        report(20_000_000, 40_000_000)
        yield

    from spaces import common  # noqa: PLC0415 (the panels import Gradio: only the tests that use this)

    monkeypatch.setattr(common, "_failed_fetches", {})
    monkeypatch.setattr(common.gr, "Info", lambda message, *a, **k: toasts.append(message))
    monkeypatch.setattr(weights, "is_loaded", lambda name: False)
    monkeypatch.setattr(weights, "to_fetch", lambda record: [record.source])
    monkeypatch.setattr(weights, "download_progress", fetching)
    yield toasts, reports, lambda fraction, desc=None: reports.append((fraction, desc))
