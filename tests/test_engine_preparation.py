"""A restart must not break a visitor's request: the app, started with an empty engine cache, answers every request
to every model that has engines, from several clients at once, while it builds those engines (in a child process,
weights.engine_builds), and each model ends on the engine ``auto`` chose on this host.

This is the start-up of a free Space, whose cache is gone after each restart, with every engine but Inductor's
(``CVHUB_ENGINES``): each candidate this host supports is exported and converted (OpenVINO) and timed against fp32 in
the child, and loaded by the app. Inductor's compile (a minute or more per package on 2 cores) would make this test
several minutes longer; the app's loading of its package is tested in tests/test_engines.py.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import weights
from core import engines
from tests.conftest import overlays_agree, start_app

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

CLIENTS = 3
PAUSE_S = 1.0  # between a visitor's requests: visitors read their answers, and the build gets a share of the cores
WINDOW_S = 480  # the longest preparation this test waits for, within pytest's timeout of 600 s per test
PREPARED = [n for n in weights.list_models() if weights.get_record(n).engines]
FP32 = f"({engines.LABELS['eager']}"  # fp32, settled or while a faster engine is being prepared
ALLOWED = ("openvino", "openvino-bf16", "bf16")
#: model -> whether ``auto`` has engines to time for it on this host (else it is served fp32 with no choice saved)
TIMED = {n: any(e in ALLOWED and engines.supported(e, torch.device("cpu")) for e in weights.get_record(n).engines)
         for n in PREPARED}


def _photo(shared: Path, folder: Path) -> str:
    """A CamVid val frame at 240x180: the models see a street, and the CPU answers in well under a second."""
    image = Image.open(shared / "data" / "camvid" / "val" / "0016E5_07959.jpg").convert("RGB")
    image.thumbnail((240, 240))
    path = folder / "street.jpg"
    image.save(path, quality=92)
    return str(path)


def _ask(client: Client, name: str, photo: str) -> tuple[str, object]:
    """(the answer's info text, what must stay the same whichever engine served it: the labels found, or the
    overlay's file)."""
    if weights.get_record(name).task == "instances":
        _, rows, info = client.predict(handle_file(photo), name, api_name="/instances")
        return info, sorted(row[1] for row in rows["data"])
    overlay, _, info = client.predict(handle_file(photo), name, api_name="/segment")
    return info, overlay


def _same(fp32, answer) -> bool:
    return fp32 == answer if isinstance(fp32, list) else overlays_agree(fp32, answer)


def _chosen(cache: Path) -> dict[str, str]:
    """model -> the engine ``auto`` measured fastest here, as the app saved it (core.engines' choices file)."""
    files = list((cache / "engines").glob("choices-*.json"))
    return {name: c["engine"] for name, c in json.loads(files[0].read_text()).items()} if files else {}


@pytest.fixture()
def restarted_app(shared, tmp_path):
    """The real app, as a restart of a free Space finds it: every weight here, an empty engine cache, ``auto``."""
    env = dict(os.environ, CVHUB_CACHE_DIR=str(tmp_path / "cache"), CVHUB_RUNTIME="auto",
               CVHUB_ENGINES=",".join(ALLOWED), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "app.log"
    with open(log_path, "w") as log:
        proc, url = start_app([sys.executable, "app.py", "--device", "cpu", "--weights-dir", str(shared / "weights")],
                              env, log)
        try:
            yield url, tmp_path / "cache", log_path
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_requests_during_engine_preparation_are_all_answered_and_each_model_ends_on_autos_engine(
        restarted_app, shared, tmp_path):
    url, cache, log_path = restarted_app
    photo = _photo(shared, tmp_path)
    answers: dict[str, list[tuple[float, str, object]]] = {name: [] for name in PREPARED}
    failures: list[str] = []
    done = threading.Event()

    def settled() -> bool:
        """Every model with engines to time here has a saved choice, and its latest answer names that engine (fp32,
        settled, for the others; not fp32 "being prepared")."""
        chosen = _chosen(cache)
        return all((name in chosen or not TIMED[name]) and answers[name]
                   and f"({engines.LABELS[chosen.get(name, 'eager')]})" in answers[name][-1][1] for name in PREPARED)

    def visitor(k: int) -> None:
        client = Client(url, verbose=False)
        turn = k
        while not done.is_set():
            name = PREPARED[turn % len(PREPARED)]
            turn += 1
            try:
                info, result = _ask(client, name, photo)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, with the model and the time
                failures.append(f"{time.monotonic() - start:.0f} s, {name}: {type(exc).__name__}: {exc}")
                continue
            answers[name].append((time.monotonic() - start, info, result))
            time.sleep(PAUSE_S)

    start = time.monotonic()
    visitors = [threading.Thread(target=visitor, args=(k,), daemon=True) for k in range(CLIENTS)]
    for thread in visitors:
        thread.start()
    try:
        while not settled() and not failures and time.monotonic() - start < WINDOW_S:
            time.sleep(2)
    finally:
        done.set()
    for thread in visitors:
        thread.join(timeout=120)
    log = log_path.read_text(errors="replace")
    seconds = round(time.monotonic() - start)
    print(f"settled after {seconds} s; answers per model:", {n: len(a) for n, a in answers.items()},
          "chosen:", _chosen(cache))

    assert not failures, "\n".join(failures) + f"\n--- app log ---\n{log[-4000:]}"
    assert "Traceback" not in log, log[log.index("Traceback"):][:4000]
    assert settled(), (f"not settled after {seconds} s: {_chosen(cache)}; last answers "
                       f"{ {n: a[-1][1][:200] for n, a in answers.items() if a} }\n--- app log ---\n{log[-4000:]}")
    for name, got in answers.items():
        fp32 = [result for _, info, result in got if FP32 in info]
        assert fp32, f"{name}: no answer served fp32 while its engine was prepared"  # the window was really tested
        wrong = [f"{t:.0f} s: {info[:160]}" for t, info, result in got if not _same(fp32[0], result)]
        assert not wrong, (name, wrong)
    assert all(f"{name}: now served by" in log for name in PREPARED), log[-2000:]
