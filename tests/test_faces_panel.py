"""The Faces panel (spaces/faces.py + spaces/triplet.py): layout, handlers, per-session and shared galleries,
errors as one sentence, and the API of a running Blocks app with two independent clients."""

import os
import sqlite3
import stat
import tempfile
from unittest import mock

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from PIL import Image

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
    # Deleted under the running app: an empty gallery, said plainly, and enrolling works again.
    for f in path.parent.iterdir():
        f.unlink()
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
    losses, before, after, text = triplet.train_demo(0.2, 20, "dlib", visitor)
    assert set(losses["curve"]) == {"triplet (hard)", "logistic same/different"}
    assert len(before) == len(after) == 40 and "after" in text


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
    class CutFaces:  # what dlib reports for faces cut by the left/top and right/bottom edges
        def __len__(self):
            return 2

        def boxes(self):
            return [(-12, -3, 50, 60), (70, 40, 130, 95)]

    photo = Image.new("RGB", (100, 80))
    shown, boxes = panel._numbered(photo, CutFaces())
    assert shown is photo and [box for box, _ in boxes] == [(0, 0, 50, 60), (70, 40, 99, 79)]
