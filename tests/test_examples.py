"""The pictures the app ships as examples: each has its source and licence written down, and gives its panel the
answer it is there to show."""

import re

from spaces import faces, instances
from spaces.common import EXAMPLES_DIR

PICTURES = sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.suffix in (".jpg", ".png"))


def test_every_shipped_picture_has_a_row_with_source_and_licence_and_every_row_a_picture():
    readme = (EXAMPLES_DIR / "README.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", readme, re.M)}
    assert PICTURES and sorted(rows) == PICTURES
    for name, row in rows.items():
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6 and all(cells), name  # file, shows, source, author, licence, evidence
        assert re.search(r"public domain|CC0|CC[- ]BY|MIT", cells[4]), (name, cells[4])


def test_the_face_examples_give_same_then_different():
    (first, second), (third, fourth) = [[str(EXAMPLES_DIR / f) for f in pair] for pair in (
        ("face-obama-2012-portrait.jpg", "face-obama-2009-speech.jpg"),
        ("face-obama-2012-portrait.jpg", "face-biden-2010.jpg"))]
    *_, same = faces.verify(first, second, 1, 1, 0.36, "dlib")
    *_, other = faces.verify(third, fourth, 1, 1, 0.36, "dlib")
    assert (same["verdict"], other["verdict"]) == ("same", "different"), (same, other)
    assert same["squared_l2"] < 0.36 < other["squared_l2"]


def test_the_instances_examples_are_shipped_pictures_of_people_and_things():
    shown = instances.example_images()
    assert shown and all(p.startswith(str(EXAMPLES_DIR)) for p in shown)
    assert any("person" in p for p in shown)
