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
    PATCH_SIDE,
    activation_maps,
    choose_model,
    describe_layer,
    dream,
    show_filters,
    top_patches,
    turn_page,
    unit_from_caption,
    unit_from_sheet,
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


def test_only_models_that_run_here_are_offered_deeper_layer_first(shared_weights):
    """Downloads are off in tests and the shared folder holds VGG-19: the models without weights are not offered
    but listed with how to enable them, and the first view is conv3_1, not conv1_1's 3-pixel patches."""
    with gr.Blocks() as demo:
        visualize.build()
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    offered = [value for _, value in blocks["vis-model"].choices]
    assert MODEL in offered and blocks["vis-model"].value == MODEL and blocks["vis-layer"].value == "conv3_1"
    lacking = {"face-facenet-vggface2", "vgg19.tv_in1k", "keypointrcnn-r50-fpn-coco", "maskrcnn-r50-fpn-v2-coco"}
    assert not lacking & set(offered)
    note = next(b for b in demo.blocks.values() if isinstance(b, gr.Markdown) and "vgg19.tv_in1k" in str(b.value))
    assert all(name in note.value for name in lacking) and note.value.count("--weights-dir") == len(lacking)
    assert choose_model(MODEL)[0]["value"] == "conv3_1"
    with pytest.raises(gr.Error, match="cannot run on this host"):
        describe_layer("vgg19.tv_in1k", "features.0")


def test_top_patches_page_from_the_index(index_dir):
    sheet, note = top_patches(MODEL, "conv1_1", 13)  # the page that holds unit 13: units 9 to 17
    # 3 frames -> 3 patches per unit -> a 2x2 grid of 40-px patches with 2-px gaps, a caption band below it;
    # 9 units three to a row, 10 px apart: every unit of the page in one picture, no scroll box.
    cell_w, cell_h = 2 * (PATCH_SIDE + 2) + 2 + 10, 2 * (PATCH_SIDE + 2) + 2 + 18 + 10
    assert sheet.size == (3 * cell_w - 10, 3 * cell_h - 10)
    assert note.startswith("Units 9–17 of 64") and "3 images" in note and "3-pixel receptive field" in note
    # A click on the middle of the last unit of the second row picks unit 9 + 5, whichever unit of the page
    # was chosen before.
    click = gr.SelectData(None, {"index": [2 * cell_w + cell_w // 2, cell_h + cell_h // 2], "value": None})
    assert unit_from_sheet(MODEL, "conv1_1", 13, click) == unit_from_sheet(MODEL, "conv1_1", 14, click) == 14
    assert turn_page(13, 1) == 18 and turn_page(5, -1) == 0
    last, _ = top_patches(MODEL, "conv1_1", 63)
    assert last.size == (cell_w - 10, cell_h - 10)  # conv1_1 has 64 units: the last page shows unit 63 alone
    beside = gr.SelectData(None, {"index": [cell_w + 5, 5], "value": None})
    assert unit_from_sheet(MODEL, "conv1_1", 63, beside) == gr.skip()
    with pytest.raises(gr.Error, match="units 0 to 63"):
        top_patches(MODEL, "conv1_1", 64)
    with pytest.raises(gr.Error, match="no layer"):
        top_patches(MODEL, "conv9_9", 0)


def test_activation_maps_of_an_upload_and_bad_uploads(shared_weights, tmp_path):
    path = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    gallery, overlay, caption = activation_maps(str(path), MODEL, "relu1_1", 5)
    assert len(gallery) == MAPS_SHOWN and overlay.size == (64, 48)
    assert caption.startswith("**Unit 5 of relu1_1** over the image")  # which unit the picture shows
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
    calls = []
    picture, note = dream(MODEL, "conv1_1", 3, 2, progress=lambda *a, **k: calls.append(a[0]))
    assert picture.size == (128, 128) and "after 2 steps" in note
    assert calls == [(1, 2), (2, 2)]  # the bar moves with every optimisation step
    assert note.startswith("Unit 3 of conv1_1") and "wall time on a shared CPU" in note


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
    gallery, overlay, _ = activation_maps(str(frames[0]), model, deep, 0)
    assert gallery and overlay.size == (480, 360)
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in frames:
        (folder / f.name).symlink_to(f)
    build_index(model, [deep], str(folder), max_side=96, device="cpu")
    sheet, note = top_patches(model, deep, 0)
    assert note.startswith("Units 0–8") and "2 images" in note and sheet.width > 3 * 2 * PATCH_SIDE
