"""spaces/visualize.py: the panel builds, and its handlers answer from an index, an upload and the weights."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from core.visualize.layers import layer_catalog
from core.visualize.top_patches import build_index
from spaces import visualize
from spaces.visualize import (
    MAPS_SHOWN,
    activation_maps,
    choose_model,
    describe_layer,
    dream,
    show_filters,
    top_patches,
    turn_page,
    unit_from_caption,
)
from weights import list_models

MODEL = "vgg19-caffe"


@pytest.fixture()
def index_dir(shared, shared_weights, tmp_path, monkeypatch):
    """A conv1_1 index of VGG-19 over 3 CamVid frames read at 64 px, in a private index folder."""
    monkeypatch.setenv("CVHUB_INDEX_DIR", str(tmp_path / "idx"))
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in sorted((shared / "data" / "camvid" / "train").iterdir())[:3]:
        (folder / f.name).symlink_to(f)
    build_index(MODEL, ["conv1_1"], str(folder), max_side=64, device="cpu")
    return tmp_path / "idx"


def test_panel_builds_with_stable_api_names():
    with gr.Blocks() as demo:
        visualize.build()
    public = {dep.api_name for dep in demo.fns.values() if dep.api_visibility == "public"}
    assert public == {"describe_layer", "filters", "top_patches", "activations", "maximize"}
    assert visualize.TITLE and visualize.SUMMARY


def test_top_patches_page_from_the_index(index_dir):
    gallery, note = top_patches(MODEL, "conv1_1", 9)
    assert [caption for _, caption in gallery] == [f"unit {u}" for u in range(9, 18)]
    grid = gallery[0][0]
    # 3 frames -> 3 patches per unit -> a 2x2 layout of 48-px patches with 2-px gaps
    assert grid.size == (2 * 50 + 2, 2 * 50 + 2)
    assert "3 images" in note and "3-pixel receptive field" in note
    assert turn_page(13, 1) == 18 and turn_page(5, -1) == 0
    last, _ = top_patches(MODEL, "conv1_1", 60)
    assert len(last) == 4  # conv1_1 has 64 units: the last page is short
    with pytest.raises(gr.Error, match="units 0 to 63"):
        top_patches(MODEL, "conv1_1", 64)
    with pytest.raises(gr.Error, match="no layer"):
        top_patches(MODEL, "conv9_9", 0)


def test_activation_maps_of_an_upload_and_bad_uploads(shared_weights, tmp_path):
    path = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    gallery, overlay = activation_maps(str(path), MODEL, "relu1_1", 5)
    assert len(gallery) == MAPS_SHOWN and overlay.size == (64, 48)
    assert all(caption.startswith("unit ") for _, caption in gallery)
    assert unit_from_caption(gr.SelectData(None, {"index": 0, "value": {"caption": "unit 17"}})) == 17
    with pytest.raises(gr.Error, match="units 0 to 63"):
        activation_maps(str(path), MODEL, "relu1_1", 64)
    with pytest.raises(gr.Error, match="Upload an image"):
        activation_maps(None, MODEL, "relu1_1", 0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(gr.Error) as err:
        activation_maps(str(broken), MODEL, "relu1_1", 0)
    assert "Something went wrong" not in str(err.value)


def test_filters_and_a_short_maximisation(shared_weights):
    image, note = show_filters(MODEL)
    assert image.size == (8 * (48 + 2) + 2,) * 2 and note.startswith("64 filters of 3x3")
    picture, note = dream(MODEL, "conv1_1", 3, 2, progress=lambda *a, **k: None)
    assert picture.size == (128, 128) and "after 2 steps" in note


def test_segmentation_models_list_their_layers():
    """Any registered conv net plugs in: its layers come from named_modules, fields from its graph."""
    seg = list_models("segmentation")
    assert seg, "no segmentation model registered"
    update, unit = choose_model(seg[0])
    assert unit == 0 and len(update["choices"]) > 5
    assert "pixel patch" in describe_layer(seg[0], update["value"])
    with pytest.raises(gr.Error, match="no model called"):
        choose_model("no-such-model")


def test_the_project_enet_end_to_end(shared, shared_weights, tmp_path, monkeypatch):
    """The trained ENet (weights in the repo): filters, maps and a patch index of a mid layer."""
    monkeypatch.setenv("CVHUB_INDEX_DIR", str(tmp_path / "idx"))
    model = "enet-camvid"
    layers = list(layer_catalog(model))
    deep = layers[len(layers) // 2]
    image, note = show_filters(model)
    assert note.startswith("13 filters of 3x3")  # ENet's initial block: 13 convolutions + max pooling
    frames = sorted((shared / "data" / "camvid" / "train").iterdir())[:2]
    gallery, overlay = activation_maps(str(frames[0]), model, deep, 0)
    assert gallery and overlay.size == (480, 360)
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in frames:
        (folder / f.name).symlink_to(f)
    build_index(model, [deep], str(folder), max_side=96, device="cpu")
    gallery, note = top_patches(model, deep, 0)
    assert len(gallery) == 9 and "2 images" in note
