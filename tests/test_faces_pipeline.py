"""The default (dlib) backend on the real photos of ../shared/data/faces: verification accuracy on
labelled pairs, identification of the shared queries, strangers, bad input, and the command line.

Every photo is analysed once per test session (:func:`analyzed`, ~0.4 s each with dlib here).
"""

import csv
import functools
import io
import itertools
import json
from contextlib import redirect_stdout
from pathlib import Path

import dlib
import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import UserError
from core.faces.__main__ import main as cli
from core.faces.detection import SMALL_FACE, UPSAMPLE_BELOW, hog_passes
from core.faces.gallery import GalleryStore
from core.faces.pipeline import default_threshold, load_pipeline
from core.faces.recognition import enroll_images, identify_image
from core.faces.verification import best_threshold, pair_accuracy, verify_images
from core.images import load_image
from tests.conftest import SHARED

FACES = SHARED / "data" / "faces"
TRAIN = FACES / "gallery_and_queries" / "train"
TEST = FACES / "gallery_and_queries" / "test"
#: single-face photos with their identity (README of ../shared/data/faces)
SINGLE_QUERIES = {"alex_lacamoire1.jpg": "alex_lacamoire", "obama1.jpg": "obama", "johnsnow_test1.jpg": "kit_harington"}
ODD_OBAMA = ("32bit.png", "obama3.jpg", "obama_partial_face.jpg")


def labelled_photos() -> list[tuple[str, Path]]:
    """(identity, path) of every single-face photo with a known identity, strangers included."""
    items = [(p.parent.name, p) for p in sorted(TRAIN.glob("*/*"))]
    items += [(who, TEST / name) for name, who in SINGLE_QUERIES.items()]
    items += [("obama", FACES / "odd" / name) for name in ODD_OBAMA]
    items += [(p.parent.name, p) for p in sorted((FACES / "aligned160").glob("*/1.png"))]
    return items


@functools.lru_cache(maxsize=None)
def pipeline():
    return load_pipeline("dlib")


@functools.lru_cache(maxsize=None)
def analyzed(path: Path):
    """The FaceSet of one shared photo (cached for the whole session; other face tests import this)."""
    return pipeline().analyze(load_image(path).image)


def test_verification_accuracy_on_labelled_pairs_of_real_photos():
    items = labelled_photos()
    assert len(items) >= 20
    embeddings = []
    for who, path in items:
        face_set = analyzed(path)
        assert len(face_set) == 1, f"{path} should show exactly one face, found {len(face_set)}"
        assert face_set.embeddings.shape == (1, 128) and face_set.chips.shape == (1, 3, 150, 150)
        embeddings.append(face_set.embeddings[0])
    e = torch.stack(embeddings)
    pairs = list(itertools.combinations(range(len(items)), 2))
    d = torch.stack([((e[i] - e[j]) ** 2).sum() for i, j in pairs])
    same = torch.tensor([items[i][0] == items[j][0] for i, j in pairs])
    assert same.sum() >= 15 and (~same).sum() >= 150
    tau = default_threshold("dlib")
    accuracy = pair_accuracy(d, same, tau)
    assert accuracy >= 0.99, f"accuracy {accuracy:.4f} at tau={tau} on {len(pairs)} pairs"
    _, best = best_threshold(d, same)
    assert best >= accuracy


def test_identifies_every_shared_query_and_rejects_strangers(tmp_path):
    store = GalleryStore(tmp_path / "gallery.db")
    for person in sorted(p for p in TRAIN.iterdir() if p.is_dir()):
        sets = [analyzed(photo) for photo in sorted(person.iterdir())]
        store.enroll(person.name, torch.cat([s.embeddings[:1] for s in sets]), backend="dlib",
                     chips=[s.chips[0] for s in sets])
    assert len(store.people()) == 5
    tau = default_threshold("dlib")

    def names(path):
        face_set = analyzed(path)
        matches = store.identify(face_set.embeddings, backend="dlib", threshold=tau)
        return [m.name for m, face in zip(matches, face_set.faces) if face.width >= 40]

    for query, who in SINGLE_QUERIES.items():
        assert names(TEST / query) == [who], query
    # The group photos: both known people are found, and nobody else is given a gallery name.
    for query, expected in (("kit_with_rose.jpg", {"kit_harington", "rose_leslie"}),
                            ("obama_and_biden.jpg", {"obama", "biden"})):
        found = names(TEST / query)
        assert expected <= set(found), (query, found)
        assert len([n for n in found if n is not None]) == len(expected), (query, found)
    for stranger in sorted((FACES / "aligned160").glob("*/1.png")):
        assert names(stranger) == [None], stranger
    # The same answers through the public function (detect + embed + one search) on a two-face photo.
    answers, face_set = identify_image(pipeline(), store, load_image(TEST / "kit_with_rose.jpg").image)
    assert {a.match.name for a in answers} == {"kit_harington", "rose_leslie"}
    assert all(a.match.distance <= tau for a in answers) and len(face_set) == 2


def test_verify_images_same_different_and_odd_files():
    p = pipeline()
    obama = load_image(TRAIN / "obama" / "obama.jpg").image
    same, _, _ = verify_images(p, obama, load_image(FACES / "odd" / "32bit.png").image)
    assert same.verdict == "same" and same.squared_l2 <= same.threshold
    assert same.l2 == pytest.approx(same.squared_l2 ** 0.5, rel=1e-5)
    other, _, _ = verify_images(p, obama, load_image(TRAIN / "biden" / "biden.jpg").image)
    assert other.verdict == "different" and other.squared_l2 > other.threshold
    gray, _, _ = verify_images(p, obama.convert("L").convert("RGB"), obama)  # a grayscale photo still works
    assert gray.verdict == "same"
    # Several faces: the largest is used unless another is picked; a face number out of range is a sentence.
    group = load_image(FACES / "two_people.jpg").image
    result, _, group_set = verify_images(p, group, group, face1=0, face2=1)
    assert result.faces_found == (2, 2) and result.faces_used == (0, 1) and result.verdict == "different"
    with pytest.raises(UserError, match="pick a face number from 1 to 2"):
        verify_images(p, group, obama, face1=5)


def test_no_face_and_tiny_face_are_one_sentence(tmp_path):
    p = pipeline()
    obama = load_image(TRAIN / "obama" / "obama.jpg").image
    with pytest.raises(UserError, match="No face was found in the first photo"):
        verify_images(p, Image.new("RGB", (320, 240), (120, 130, 140)), obama)
    tiny = obama.resize((obama.width // 10, obama.height // 10))  # the face is ~25 px wide
    with pytest.raises(UserError, match="(No face was found|pixels wide)"):
        verify_images(p, obama, tiny)
    with pytest.raises(UserError, match="No face"):
        enroll_images(p, GalleryStore(tmp_path / "g.db"), "Nobody", [Image.new("RGB", (200, 200))])


def _run_cli(argv) -> tuple[int, dict]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = cli(argv)
    return rc, json.loads(buf.getvalue())


def test_command_line_verify_pairs_enroll_identify(tmp_path):
    rc, out = _run_cli(["verify", str(TRAIN / "obama" / "obama.jpg"), str(TEST / "obama1.jpg"), "--json"])
    assert rc == 0 and out["verdict"] == "same" and out["faces_found"] == [1, 1] and out["threshold"] == 0.36
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_x", "file_y", "Decision"])
        w.writerow(["train/obama/obama.jpg", "test/obama1.jpg", "Yes"])
        w.writerow(["train/biden/biden.jpg", "train/biden/biden2.jpg", "Yes"])
        w.writerow(["train/obama/obama.jpg", "train/biden/biden.jpg", "No"])
        w.writerow(["train/obama/obama.jpg", "no_such_file.jpg", "No"])
    rc, out = _run_cli(["verify-pairs", str(pairs), "--root", str(FACES / "gallery_and_queries"), "--json"])
    assert rc == 0 and out["labelled_pairs"] == 3 and out["accuracy"] == 1.0
    assert [p.get("verdict") for p in out["pairs"]] == ["same", "same", "different", None]
    assert "error" in out["pairs"][3]
    db = str(tmp_path / "g.db")
    rc, out = _run_cli(["enroll", "--gallery", db, "Barack", str(TRAIN / "obama" / "obama.jpg"), "--json"])
    assert rc == 0 and out["faces_added"] == 1
    rc, out = _run_cli(["identify", "--gallery", db, str(TEST / "obama_and_biden.jpg"), "--json"])
    assert rc == 0 and [f["name"] for f in out["faces"]].count("Barack") == 1
    rc, out = _run_cli(["verify", str(TRAIN / "obama" / "obama.jpg"), str(tmp_path / "missing.jpg"), "--json"])
    assert rc == 2 and out["error"]


class ScriptedHog:
    """A stand-in for dlib's HOG detector: ``run(image, upsample, threshold)`` answers from a script per upsample."""

    def __init__(self, at_1x, at_2x):
        self.script = {0: at_1x, 1: at_2x}
        self.calls = []

    def run(self, image, upsample, threshold):
        self.calls.append(upsample)
        rects = [dlib.rectangle(*box) for box in self.script[upsample]]
        return rects, [1.0] * len(rects), [0] * len(rects)


def test_the_upsampled_pass_runs_only_when_it_pays():
    big, small_photo = np.zeros((900, 1280, 3), np.uint8), np.zeros((UPSAMPLE_BELOW, 600, 3), np.uint8)
    large_face, near_limit, tiny = (100, 100, 400, 400), (600, 100, 600 + SMALL_FACE - 40, 180), (900, 500, 940, 540)
    hog = ScriptedHog([large_face], [large_face])  # a portrait: one pass at 1x
    rects, _, why = hog_passes(hog, big)
    assert hog.calls == [0] and why == "" and len(rects) == 1
    hog = ScriptedHog([], [tiny])  # nothing at 1x: look again at 2x
    rects, _, why = hog_passes(hog, big)
    assert hog.calls == [0, 1] and "no face" in why and [r.width() for r in rects] == [41]
    # A face near the limit at 1x: 2x again; a face only the 1x pass caught is kept, one both caught counts once.
    hog = ScriptedHog([large_face, near_limit], [(602, 98, 682, 182), tiny])
    rects, _, why = hog_passes(hog, big)
    assert hog.calls == [0, 1] and "81 px" in why and len(rects) == 3
    hog = ScriptedHog([], [large_face])  # a small photo: straight to 2x, cheap at this size
    _, _, why = hog_passes(hog, small_photo)
    assert hog.calls == [1] and "small" in why


def test_a_groups_small_faces_are_found_and_the_detector_says_how():
    """The back rows of a group selfie: the 6 faces of the group photo (counted by hand) at half size in a
    1600-px picture are ~36 px at the detector's 1280 px, below HOG's 80-px window. One pass at 1x (the rule
    before) finds none of them; the second, upsampled pass finds all six. A portrait still costs one pass."""
    group = load_image(FACES / "multiface.jpg").image
    canvas = Image.new("RGB", (1600, 1000), (128, 128, 128))
    canvas.paste(group.resize((group.width // 2, group.height // 2)), (400, 250))
    hog = pipeline().detector.detector
    assert len(hog.run(np.asarray(canvas.resize((1280, 800))), 0, 0.0)[0]) == 0
    found = pipeline().analyze(canvas)
    assert len(found) == 6 and found.detection.upsampled and found.detection.side == 1280
    assert found.detection.describe().startswith("dlib's HOG detector (frontal faces) found 6 face(s) at 1280 px")
    portrait = analyzed(TRAIN / "obama" / "obama.jpg")
    assert len(portrait) == 1 and not portrait.detection.upsampled and "2x" not in portrait.detection.describe()
