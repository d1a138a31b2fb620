"""The Faces panel (spaces/faces.py + spaces/triplet.py): layout, handlers, per-session and shared galleries,
errors as one sentence, and the API of a running Blocks app with two independent clients."""

import os
import sqlite3
import stat
import tempfile
import time
from dataclasses import replace
from unittest import mock

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from core.faces.detection import DetectedFace
from core.faces.pipeline import available_backends, load_pipeline
from spaces import face_galleries, triplet
from spaces import faces as panel
from tests.conftest import SHARED

FACES = SHARED / "data" / "faces"
TRAIN = FACES / "gallery_and_queries" / "train"
TEST = FACES / "gallery_and_queries" / "test"


def _photo(*parts) -> str:
    return str(FACES.joinpath(*parts))


@pytest.fixture()
def per_session_galleries(tmp_path, monkeypatch):
    """Per-session galleries (no --gallery), their files under this test's tmp folder; yields that folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    face_galleries.use_shared_gallery(None)
    yield tmp_path / "cvhub-galleries"
    face_galleries.use_shared_gallery(None)


def _visitor(session_hash: str) -> gr.Request:
    """What Gradio hands a handler: the request of one browser session (or one API client)."""
    return gr.Request(session_hash=session_hash)


def test_panel_builds_with_stable_api_names():
    with gr.Blocks() as demo:
        panel.build()
    names = {getattr(fn, "api_name", None) for fn in demo.fns.values()}
    assert {"verify", "enroll", "identify", "rename_person", "delete_person", "list_people", "triplet",
            "hard_triplets", "train_triplet"} <= names
    assert panel.TITLE and panel.SUMMARY


def test_session_gallery_enroll_identify_rename_delete(per_session_galleries):
    alice = _visitor("alice")
    table, thumbs, _, name, photos, status = panel.enroll(
        "Barack", [_photo("gallery_and_queries", "train", "obama", "obama.jpg")], "dlib", alice)
    assert list(table["name"]) == ["Barack"] and len(thumbs) == 1
    assert name == "" and photos is None and "Barack" in status  # the form is cleared for the next person
    panel.enroll("Joe", [str(p) for p in sorted((TRAIN / "biden").iterdir())], "dlib", alice)
    (image, boxes), rows, note = panel.identify(str(TEST / "obama_and_biden.jpg"), 0.36, "dlib", alice)
    assert "dlib" in note
    assert {"Barack", "Joe"} <= set(rows["answer"]) and len(boxes) == len(rows)
    table, *_ = panel.rename_person("Joe", "Joe B.", alice)
    assert list(table["name"]) == ["Barack", "Joe B."] and list(table["faces"]) == [1, 2]
    table, *_ = panel.delete_person("Barack", alice)
    assert list(table["name"]) == ["Joe B."]
    # Another visitor gets an empty gallery of their own.
    with pytest.raises(gr.Error, match="gallery is empty"):
        panel.identify(str(TEST / "obama1.jpg"), 0.36, "dlib", _visitor("bob"))
    files = sorted(per_session_galleries.glob("session-*.db"))
    assert len(files) == 2 and not any("alice" in f.name for f in files)  # the session token is not on disk
    panel.unload(alice)  # the tab closed (demo.unload): alice's gallery file is gone at once, bob's stays
    assert len(list(per_session_galleries.glob("session-*.db"))) == 1
    with pytest.raises(gr.Error, match="gallery is empty"):
        panel.identify(str(TEST / "obama1.jpg"), 0.36, "dlib", alice)


def test_a_retried_enrollment_stores_no_face_twice(per_session_galleries):
    """A client that times out and sends the same photos again (or a double click) adds nothing new."""
    carol = _visitor("carol")
    photos = [str(p) for p in sorted((TRAIN / "biden").iterdir())]
    panel.enroll("Joe", photos, "dlib", carol)
    table, *_, status = panel.enroll("Joe", photos, "dlib", carol)
    assert list(table["faces"]) == [len(photos)] and "0 new face(s)" in status and "already" in status


def test_a_failed_enroll_changes_nothing_and_names_stay_plain_text(per_session_galleries):
    dave = _visitor("dave")
    obama = _photo("gallery_and_queries", "train", "obama", "obama.jpg")
    panel.enroll("Barack", [obama], "dlib", dave)
    blank = per_session_galleries / "blank.png"
    __import__("PIL.Image").Image.new("RGB", (200, 200), "white").save(blank)
    with pytest.raises(gr.Error, match="face"):
        panel.enroll("Nobody", [str(blank)], "dlib", dave)
    for bad in ("Eve\u202egnp.exe", "zero\u200bwidth", "nul\x00byte"):
        with pytest.raises(gr.Error, match="invisible"):
            panel.enroll(bad, [obama], "dlib", dave)
    table, *_ = panel.list_people(dave)
    assert list(table["name"]) == ["Barack"] and list(table["faces"]) == [1]
    # A name that is Markdown or HTML is shown as text: no image, link or tag reaches a viewer's browser.
    beacon = "![b](http://host/beacon.png) <img src=x>"
    *_, status = panel.enroll(beacon, [_photo("gallery_and_queries", "train", "obama", "obama2.jpg")], "dlib", dave)
    assert "![b](" not in status and "<img" not in status and "beacon" in status
    _, names, _ = triplet._gallery_faces("dlib", dave)
    anchor = names.index(beacon)
    _, text = triplet.hardest(anchor, 0.2, "dlib", dave)
    assert "![b](" not in text and "<img" not in text


def test_shared_gallery_is_one_file_for_everybody(tmp_path, per_session_galleries):
    path = tmp_path / "shared.db"
    face_galleries.use_shared_gallery(path)
    panel.enroll("Barack", [_photo("gallery_and_queries", "train", "obama", "obama2.jpg")], "dlib", _visitor("a"))
    _, rows, _ = panel.identify(str(TEST / "obama1.jpg"), 0.36, "dlib", _visitor("some other session"))
    assert list(rows["answer"]) == ["Barack"]
    panel.unload(_visitor("a"))  # closing a tab never deletes the operator's shared gallery
    assert path.is_file()


def test_bad_input_is_one_sentence(tmp_path, per_session_galleries):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    obama = _photo("gallery_and_queries", "train", "obama", "obama.jpg")
    with pytest.raises(gr.Error):
        panel.verify(str(corrupt), obama, 1, 1, 0.36, "dlib")
    with pytest.raises(gr.Error, match="face number"):
        panel.verify(obama, obama, 2, 1, 0.36, "dlib")
    with pytest.raises(gr.Error, match="whole number"):
        panel.verify(obama, obama, None, 1, 0.36, "dlib")
    with pytest.raises(gr.Error, match="name"):
        panel.enroll("  ", [obama], "dlib", _visitor("e"))
    with pytest.raises(gr.Error, match="at least one photo"):
        panel.enroll("Nobody", None, "dlib", _visitor("e"))


def test_storage_faults_are_one_sentence(tmp_path, per_session_galleries):
    """A read-only gallery, one deleted while the app runs: a sentence that says what to do, no traceback."""
    path = tmp_path / "shared" / "gallery.db"
    face_galleries.use_shared_gallery(path)
    visitor = _visitor("f")
    obama = _photo("gallery_and_queries", "train", "obama", "obama.jpg")
    panel.enroll("Barack", [obama], "dlib", visitor)
    for f in path.parent.iterdir():
        os.chmod(f, stat.S_IRUSR)
    os.chmod(path.parent, stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(path, os.W_OK):  # root ignores file modes: make the write fail as a read-only disk would
            real = sqlite3.connect
            with mock.patch("sqlite3.connect", lambda *a, **k: real(f"file:{path}?mode=ro", uri=True, **k)):
                with pytest.raises(gr.Error, match="read-only.*other panels still work"):
                    panel.enroll("Joe", [str(TRAIN / "biden" / "biden.jpg")], "dlib", visitor)
        else:
            with pytest.raises(gr.Error, match="read-only.*other panels still work"):
                panel.enroll("Joe", [str(TRAIN / "biden" / "biden.jpg")], "dlib", visitor)
    finally:
        os.chmod(path.parent, stat.S_IRWXU)
        for f in path.parent.iterdir():
            os.chmod(f, stat.S_IRUSR | stat.S_IWUSR)
    # Deleted under the running app: the loss said once, then an empty gallery, said plainly, and enrolling works
    # again.
    for f in path.parent.iterdir():
        f.unlink()
    with pytest.raises(gr.Error, match="file was deleted on the server"):
        panel.identify(str(TEST / "obama1.jpg"), 0.36, "dlib", visitor)
    with pytest.raises(gr.Error, match="gallery is empty"):
        panel.identify(str(TEST / "obama1.jpg"), 0.36, "dlib", visitor)
    table, *_ = panel.enroll("Barack", [obama], "dlib", visitor)
    assert list(table["name"]) == ["Barack"]


def test_triplet_playground_handlers(per_session_galleries):
    crops, text = triplet.triplet_from_photos(_photo("gallery_and_queries", "train", "obama", "obama.jpg"),
                                              str(TEST / "obama1.jpg"), str(TRAIN / "biden" / "biden.jpg"), 0.2, "dlib")
    assert len(crops) == 3 and "Loss = max(" in text
    visitor = _visitor("g")
    for person in ("obama", "biden", "rose_leslie"):
        panel.enroll(person, [str(p) for p in sorted((TRAIN / person).iterdir())], "dlib", visitor)
    dropdown = triplet.list_anchors("dlib", visitor)
    assert len(dropdown.choices) == 6
    shown, text = triplet.hardest(0, 0.2, "dlib", visitor)
    assert [label.split(":")[0] for _, label in shown] == ["anchor", "hardest positive", "hardest negative"]
    assert "hardest positive: obama" in shown[1][1] and "obama" not in shown[2][1]
    # A wide margin: these three people are apart already, and at mu = 0.2 the triplet loss is 0 throughout.
    triplet_losses, logistic_losses, before, after, text = triplet.train_demo(0.8, 20, "dlib", visitor)
    assert len(before) == len(after) == 40 and "after" in text
    assert len(triplet_losses) == len(logistic_losses) == 20 and list(triplet_losses.columns) == ["step", "loss"]
    assert 0 < triplet_losses["loss"].max() < logistic_losses["loss"].max()


def test_each_training_loss_has_an_axis_of_its_own():
    """The triplet loss (~0.05) drawn on the logistic loss's axis (~0.7) looked flat: each has its own plot, whose
    axis runs from 0 to that loss's own largest value."""
    with gr.Blocks() as demo:
        panel.build()
    train = next(fn for fn in demo.fns.values() if fn.api_name == "train_triplet")
    plots = [o for o in train.outputs if isinstance(o, gr.LinePlot)]
    assert len(plots) == 2 and all(p.y_lim == [0, None] and p.color is None for p in plots)

def test_two_api_clients_have_separate_galleries(per_session_galleries):
    with gr.Blocks() as demo:
        panel.build()
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        alice, bob = Client(url, verbose=False), Client(url, verbose=False)
        alice.predict("Barack", [handle_file(_photo("gallery_and_queries", "train", "obama", "obama.jpg"))], "dlib",
                      api_name="/enroll")
        _, rows, _ = alice.predict(handle_file(str(TEST / "obama1.jpg")), 0.36, "dlib", api_name="/identify")
        assert [r[1] for r in rows["data"]] == ["Barack"]
        with pytest.raises(Exception, match="gallery is empty"):
            bob.predict(handle_file(str(TEST / "obama1.jpg")), 0.36, "dlib", api_name="/identify")
    finally:
        demo.close()


def test_a_face_cut_by_the_frame_is_boxed_inside_the_photo():
    """dlib puts the box of a face cut by the frame partly outside the photo; the boxes given out and drawn stop
    at the edge (AnnotatedImage drew a negative coordinate as a stray line at the opposite edge)."""
    photo = Image.open(_photo("odd", "obama_partial_face.jpg")).convert("RGB")
    face_set = load_pipeline("dlib").analyze(photo)
    assert face_set.faces[0].box[0] < 0  # the detector's own box reaches past the left edge
    shown, boxes = panel._numbered(photo, face_set)
    assert shown is photo and [label for _, label in boxes] == ["face 1"]
    x0, y0, x1, y1 = boxes[0][0]
    assert x0 == 0 and 0 <= y0 < y1 <= photo.height - 1 and x1 <= photo.width - 1
    # Both edges of both axes, on made-up boxes of a 100 x 80 photo.
    cut = [DetectedFace((-12.4, -3.0, 50.0, 60.0), np.zeros((5, 2)), 1.0),
           DetectedFace((70.0, 40.0, 130.0, 95.0), np.zeros((5, 2)), 1.0)]
    small = Image.new("RGB", (100, 80))
    made_up = replace(face_set, faces=cut, size=small.size)
    _, boxes = panel._numbered(small, made_up)
    assert [box for box, _ in boxes] == [(0, 0, 50, 60), (70, 40, 99, 79)]


def test_only_backends_that_run_here_are_offered_and_the_others_say_how(monkeypatch):
    """Tests run with downloads off and without FaceNet's weights: FaceNet is named with how to enable it, not
    offered, and asking for it fails at once instead of waiting on the Hub."""
    assert available_backends() == ["dlib"]
    with gr.Blocks() as demo:
        panel.build()
    radio = next(b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "Backend")
    assert [value for _, value in radio.choices] == ["dlib"]
    note = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "faces-facenet-missing")
    assert "--weights-dir" in note.value and "py-feat/facenet" in note.value
    started = time.monotonic()
    with pytest.raises(gr.Error, match="cannot run here.*--weights-dir"):
        panel.verify(_photo("two_people.jpg"), _photo("two_people.jpg"), 1, 1, 1.21, "facenet")
    assert time.monotonic() - started < 2


def test_a_failure_shows_only_on_its_own_outputs_and_the_verdict_sits_by_its_button():
    """Gallery actions report progress and errors on the status line alone (the table, thumbnails and person list
    keep what they show); the verdict is in the button's column, so it shows where the student clicked."""
    with gr.Blocks() as demo:
        panel.build()
    events = {fn.api_name: fn for fn in demo.fns.values()}
    status = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "faces-status")
    for name in ("enroll", "rename_person", "delete_person", "list_people"):
        assert events[name].show_progress_on == [status], name
    verdict = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "faces-verdict")
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "faces-verify")
    assert events["verify"].show_progress_on == [verdict]
    column = button.parent
    assert isinstance(column, gr.Column) and column.children.index(verdict) == column.children.index(button) + 1


def test_the_verdict_names_the_detector_and_its_wall_time(per_session_galleries):
    photo = _photo("gallery_and_queries", "train", "obama", "obama.jpg")
    *_, markdown, result = panel.verify(photo, _photo("gallery_and_queries", "test", "obama1.jpg"), 1, 1, 0.36, "dlib")
    assert markdown.startswith("## Same person")
    assert "Photo 1: dlib's HOG detector (frontal faces) found 1 face(s)" in markdown
    assert "Photo 2: dlib's HOG detector" in markdown and "wall time on a shared CPU" in markdown


def test_crops_are_shown_whole():
    """A gallery's tiles are squares as wide as its columns: three crops across the panel's width were taller than
    their 240-px box, which showed only the eye band. They sit beside their text (half the width) and are fitted
    into their tiles whole ("contain")."""
    with gr.Blocks() as demo:
        panel.build()
    galleries = {b.label: b for b in demo.blocks.values() if isinstance(b, gr.Gallery)}
    assert all(g.object_fit == "contain" for g in galleries.values())
    for label in ("Aligned crops", "Hardest triplet"):
        row = galleries[label].parent
        assert isinstance(row, gr.Row) and [type(c) for c in row.children] == [gr.Gallery, gr.Markdown], label
