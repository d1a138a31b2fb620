"""Shared test fixtures: the repository, and ../shared (weights, CamVid, faces, images) beside it."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core import runtime

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Tests run offline: no weight is downloaded or rebuilt from the internet (the app started by `running_app`
# inherits this too). The tests of the download paths lift it for themselves, with stand-in servers on 127.0.0.1.
os.environ["CVHUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared beside the checkout; CI has it, so its absence is a failure, not a skip."""
    assert SHARED.is_dir(), f"{SHARED} is missing: tests need ../shared beside the checkout"
    return SHARED


@pytest.fixture()
def shared_weights(shared, monkeypatch):
    """Point the resolver at ../shared/weights for this test."""
    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=shared / "weights"))
    return shared / "weights"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def running_app(shared):
    """The real app (`python app.py`) on a free port, as a user starts it; yields its URL."""
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    log = open(REPO / ".pytest_cache" / "app.log", "w") if (REPO / ".pytest_cache").is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--device", "cpu", "--weights-dir", str(shared / "weights")],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "the app exited during start-up (see .pytest_cache/app.log)"
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, "the app did not answer within 120 s"
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
