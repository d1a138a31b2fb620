"""weights.availability: what runs here is told apart from what cannot, without waiting on a network;
and the About table that reads it, with each model's metrics as readable text."""

from __future__ import annotations

import socket
import time

import pytest

import weights
from spaces import about
from tests.hubstub import serve_hub
from weights import availability as av


@pytest.fixture()
def downloads_on(monkeypatch):
    """Downloads allowed (tests run with CVHUB_OFFLINE=1), each host asked afresh."""
    monkeypatch.delenv("CVHUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    av._host_answers.cache_clear()
    yield
    av._host_answers.cache_clear()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


def test_files_on_disk_run_and_downloads_off_say_how_to_enable(shared_weights):
    assert av.availability("vgg19-caffe") == av.Availability("vgg19-caffe", True)
    facenet = av.availability("face-facenet-vggface2")
    assert not facenet.runnable
    assert facenet.note.startswith("downloads are off") and "py-feat/facenet" in facenet.note
    assert "--weights-dir" in facenet.note
    assert "face-facenet-vggface2" not in av.runnable(weights.list_models())


def test_a_server_out_of_reach_is_known_at_once_without_downloading(downloads_on, monkeypatch):
    """No HF_HUB_OFFLINE, but the Hub does not answer: huggingface_hub would retry for ~25 s; the probe fails at
    once and the model is not offered, with the host named."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    facenet = av.availability("face-facenet-vggface2")
    assert time.monotonic() - started < av.PROBE_TIMEOUT_S + 0.5
    assert not facenet.runnable and facenet.note.startswith("127.0.0.1 cannot be reached")


def test_a_server_that_answers_is_offered_with_what_the_first_use_fetches(downloads_on, monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with serve_hub({}) as (endpoint, _):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        facenet = av.availability("face-facenet-vggface2")
    assert facenet.runnable and facenet.note == "fetched on first use"


def test_metrics_read_as_text():
    assert about.metrics_text({"dataset": "CamVid val (101 frames)", "mIoU": 0.6411, "epochs": 82,
                               "iou": {"Sky": 0.93}}) == "mIoU 64.1 % on CamVid val (101 frames)"
    assert about.metrics_text({"dataset": "LFW", "accuracy": 0.9938, "threshold_sq_l2": 0.36}) == \
        "accuracy 99.4 %, τ on d 0.36 on LFW"
    assert about.metrics_text({"box_map": 54.6}) == "box mAP 54.6"  # COCO's mAP is published in percent
    assert about.metrics_text({}) == "—"


def test_the_about_table_says_what_runs_here_in_short_cells(shared_weights):
    rows = {row[0]: row for row in about.model_table()}
    assert len(about.HEADERS) == len(about.COLUMN_WIDTHS) == len(next(iter(rows.values())))
    assert rows["vgg19-caffe"][5] == "yes"
    assert rows["face-facenet-vggface2"][5].startswith("no: downloads are off")
    # The shipped ENet's released figures, as percentages with one decimal, in the record's order.
    enet = weights.get_record("enet-camvid").metrics
    assert rows["enet-camvid"][4].startswith(f"mIoU {100 * enet['mIoU']:.1f} %, class average "
                                             f"{100 * enet['class_avg']:.1f} %, pixel accuracy "
                                             f"{100 * enet['global_accuracy']:.1f} %")
    assert "{" not in " ".join(row[4] for row in rows.values())  # no raw dicts
    assert rows["face-facenet-vggface2"][2] == "Hugging Face Hub py-feat/facenet"
