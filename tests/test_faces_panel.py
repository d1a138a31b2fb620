"""The Faces panel (spaces/faces.py + spaces/triplet.py): layout, handlers, per-session and shared galleries,
errors as one sentence, and the API of a running Blocks app with two independent clients."""

import gradio as gr
import pytest

from spaces import faces as panel
from spaces import triplet
from tests.conftest import SHARED

FACES = SHARED / "data" / "faces"
TRAIN = FACES / "gallery_and_queries" / "train"
TEST = FACES / "gallery_and_queries" / "test"


def _photo(*parts) -> str:
    return str(FACES.joinpath(*parts))


@pytest.fixture()
def per_session_galleries(tmp_path, monkeypatch):
    """Per-session galleries (no --gallery), their files under this test's tmp folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    panel.use_shared_gallery(None)
    yield
    panel.use_shared_gallery(None)


def test_panel_builds_with_stable_api_names():
    with gr.Blocks() as demo:
        panel.build()
    names = {getattr(fn, "api_name", None) for fn in demo.fns.values()}
    assert {"verify", "enroll", "identify", "rename_person", "delete_person", "list_people", "triplet",
            "hard_triplets", "train_triplet"} <= names
    assert panel.TITLE and panel.SUMMARY


def test_session_gallery_enroll_identify_rename_delete(per_session_galleries):
    table, thumbs, _, session = panel.enroll("Barack", [_photo("gallery_and_queries", "train", "obama", "obama.jpg")],
                                             "dlib", None)
    assert session and list(table["name"]) == ["Barack"] and len(thumbs) == 1
    panel.enroll("Joe", [str(p) for p in sorted((TRAIN / "biden").iterdir())], "dlib", session)
    (image, boxes), rows, note, same_session = panel.identify(str(TEST / "obama_and_biden.jpg"), 0.36, "dlib", session)
    assert same_session == session and "dlib" in note
    assert {"Barack", "Joe"} <= set(rows["answer"]) and len(boxes) == len(rows)
    table, *_ = panel.rename_person("Joe", "Joe B.", session)
    assert list(table["name"]) == ["Barack", "Joe B."] and list(table["faces"]) == [1, 2]
    table, *_ = panel.delete_person("Barack", session)
    assert list(table["name"]) == ["Joe B."]
    # Another visitor (no session yet) gets an empty gallery of their own.
    with pytest.raises(gr.Error, match="gallery is empty"):
        panel.identify(str(TEST / "obama1.jpg"), 0.36, "dlib", None)
    panel.forget_session_gallery(session)  # the session ended: its file is gone
    assert not __import__("pathlib").Path(session).exists()


def test_shared_gallery_is_one_file_for_everybody(tmp_path, per_session_galleries):
    path = tmp_path / "shared.db"
    panel.use_shared_gallery(path)
    panel.enroll("Barack", [_photo("gallery_and_queries", "train", "obama", "obama2.jpg")], "dlib", None)
    _, rows, _, _ = panel.identify(str(TEST / "obama1.jpg"), 0.36, "dlib", "some other session")
    assert list(rows["answer"]) == ["Barack"]
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
        panel.enroll("  ", [obama], "dlib", None)
    with pytest.raises(gr.Error, match="at least one photo"):
        panel.enroll("Nobody", None, "dlib", None)


def test_triplet_playground_handlers(per_session_galleries):
    crops, text = triplet.triplet_from_photos(_photo("gallery_and_queries", "train", "obama", "obama.jpg"),
                                              str(TEST / "obama1.jpg"), str(TRAIN / "biden" / "biden.jpg"), 0.2, "dlib")
    assert len(crops) == 3 and "Loss = max(" in text
    _, _, _, session = panel.enroll("obama", [str(p) for p in sorted((TRAIN / "obama").iterdir())], "dlib", None)
    for person in ("biden", "rose_leslie"):
        panel.enroll(person, [str(p) for p in sorted((TRAIN / person).iterdir())], "dlib", session)
    dropdown, session = triplet.list_anchors("dlib", session)
    assert len(dropdown.choices) == 6
    shown, text, _ = triplet.hardest(0, 0.2, "dlib", session)
    assert [label.split(":")[0] for _, label in shown] == ["anchor", "hardest positive", "hardest negative"]
    assert "hardest positive: obama" in shown[1][1] and "obama" not in shown[2][1]
    losses, before, after, text, _ = triplet.train_demo(0.2, 20, "dlib", session)
    assert set(losses["curve"]) == {"triplet (hard)", "logistic same/different"}
    assert len(before) == len(after) == 40 and "after" in text
    panel.forget_session_gallery(session)


def test_two_api_clients_have_separate_galleries(per_session_galleries):
    from gradio_client import Client, handle_file

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
