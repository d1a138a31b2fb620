"""torchvision's COCO Mask R-CNN v2 and Keypoint R-CNN: records from torchvision's metadata, the file check, keypoints.

The real COCO files cannot be fetched here; the tests write a torchvision-style ``.pth`` of a
random Keypoint R-CNN (a file the test makes) and run the real resolve-load-detect-draw path on it.
"""

import dataclasses
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, MaskRCNN_ResNet50_FPN_V2_Weights

import weights
from core import runtime
from core.datasets.coco import COCO_CLASSES, COCO_SKELETON, KEYPOINT_NAMES
from core.errors import MissingWeights, WeightsMismatch
from core.instances.coco import keypointrcnn_r50_fpn_coco
from core.instances.predict import Instance, default_model, detect, draw
from spaces import instances as panel
from tests.conftest import REPO
from tests.httpstub import serve_files
from weights.registry import ExternalFile, register, unregister

torch.set_num_threads(2)


def test_records_take_names_files_and_hash_digits_from_torchvision():
    mask = weights.get_record("maskrcnn-r50-fpn-v2-coco")
    points = weights.get_record("keypointrcnn-r50-fpn-coco")
    assert mask.source.filename == "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    assert mask.source.sha256_prefix == "73cbd019"
    assert points.source.filename == "keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
    # The full pinned digests agree with the digits torchvision put in the file names.
    for record in (mask, points):
        assert len(record.sha256) == 64 and record.sha256.startswith(record.source.sha256_prefix)
    # 90 label ids: COCO's 80 classes and the 10 ids it skips.
    assert len(COCO_CLASSES) == 90 and sum(c != "N/A" for c in COCO_CLASSES) == 80
    assert COCO_CLASSES[0] == "person" and COCO_CLASSES[2] == "car"
    assert len(KEYPOINT_NAMES) == 17 and KEYPOINT_NAMES[0] == "nose"
    assert all(0 <= a < 17 and 0 <= b < 17 for a, b in COCO_SKELETON) and len(COCO_SKELETON) == 19
    assert mask.metrics["mask_map"] == 41.8 and "published by torchvision" in mask.metrics["dataset"]
    # The ground floor's copies of the names are torchvision's, so they match the files.
    assert mask.class_names == COCO_CLASSES == tuple(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"][1:])
    assert KEYPOINT_NAMES == tuple(KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta["keypoint_names"])


def test_without_the_coco_files_the_project_model_is_the_default_and_the_error_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CVHUB_OFFLINE", "1")
    assert default_model() == default_model(downloadable=True) == "maskrcnn-vgg19-camvid"
    with pytest.raises(MissingWeights, match="keypointrcnn_resnet50_fpn_coco-fc266e95.pth.*--weights-dir"):
        weights.create("keypointrcnn-r50-fpn-coco")
    # Online, where torchvision's site answers (a stand-in), the COCO model can be fetched on first use, so the app
    # makes it the default; the CLI stays with the files on disk.
    monkeypatch.delenv("CVHUB_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serve_files({}) as (base, _):
        monkeypatch.setenv("CVHUB_TORCHVISION_URL", f"{base}/models/")
        assert default_model() == "maskrcnn-vgg19-camvid"
        assert default_model(downloadable=True) == "maskrcnn-r50-fpn-v2-coco"


def test_the_cli_answers_a_damaged_weight_file_with_one_sentence(tmp_path, shared):
    """As the app does: no traceback, the sentence that says what is wrong and what to do."""
    (tmp_path / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth").write_bytes(b"not the weights")
    street = shared / "data" / "camvid" / "val" / "0016E5_07971.jpg"
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"))
    done = subprocess.run([sys.executable, "-m", "core.instances", "predict", str(street), "--model",
                           "maskrcnn-r50-fpn-v2-coco", "--weights-dir", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: The weight file of model 'maskrcnn-r50-fpn-v2-coco' "
                                                          "on this server is damaged")


@pytest.fixture(scope="module")
def keypoint_file(tmp_path_factory):
    """A random Keypoint R-CNN saved as torchvision saves its weights (a plain state dict, fp16 to halve the file)."""
    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in keypointrcnn_r50_fpn_coco().state_dict().items()}
    folder = tmp_path_factory.mktemp("weights")
    path = folder / "keypointrcnn-test.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = path.with_name(f"keypointrcnn-test-{digest[:8]}.pth")  # torch.hub's naming: the hash digits in the name
    path.rename(named)
    return named


def _register_test_record(path, prefix: str, name: str, sha256: str | None = None):
    real = weights.get_record("keypointrcnn-r50-fpn-coco")
    return register(dataclasses.replace(
        real, name=name, source=ExternalFile(path.name, sha256_prefix=prefix), sha256=sha256,
        # Small inputs and few detections keep the test fast; the architecture is the real one.
        builder_kwargs={"min_size": 224, "max_size": 320, "box_detections_per_img": 4, "box_score_thresh": 0.0},
    ))


def test_keypoint_rcnn_loads_a_torchvision_file_and_returns_17_keypoints(keypoint_file, monkeypatch):
    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=keypoint_file.parent))
    record = _register_test_record(keypoint_file, keypoint_file.stem.rsplit("-", 1)[1], "keypointrcnn-test")
    try:
        model = weights.create(record.name)
        image = torch.rand(3, 200, 260)
        found = detect(model, record.class_names, [image], score=0.0)[0]
        assert 0 < len(found) <= 4
        assert all(i.label == "person" and i.mask is None and i.keypoints.shape == (17, 3) for i in found)
        row = found[0].as_dict()
        assert row["mask_area"] is None and len(row["keypoints"]) == 17
        # Keypoints inside their box (torchvision's heatmap decoding), drawn only when switched on.
        x1, y1, x2, y2 = found[0].box
        kp = found[0].keypoints
        assert ((kp[:, 0] >= x1 - 1) & (kp[:, 0] <= x2 + 1) & (kp[:, 1] >= y1 - 1) & (kp[:, 1] <= y2 + 1)).all()
        pixels = (image * 255).to(torch.uint8)
        seen = [Instance("person", 0.9, found[0].box, keypoints=torch.cat([kp[:, :2], torch.ones(17, 1)], 1))]
        assert not torch.equal(draw(pixels, seen, boxes=False), pixels)
        assert torch.equal(draw(pixels, seen, boxes=False, keypoints=False), pixels)
    finally:
        unregister(record.name)


def test_keypoint_rcnn_downloaded_from_a_stand_in_of_torchvisions_site(keypoint_file, tmp_path, monkeypatch):
    """The real record's source, its URL served by a stand-in on 127.0.0.1 (CVHUB_TORCHVISION_URL), a test file."""
    real = weights.get_record("keypointrcnn-r50-fpn-coco")
    data = keypoint_file.read_bytes()
    monkeypatch.setattr(runtime, "_settings", runtime.Settings())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for flag in ("CVHUB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    record = register(dataclasses.replace(
        real, name="keypointrcnn-download-test", sha256=hashlib.sha256(data).hexdigest(),
        source=dataclasses.replace(real.source, url=real.source.url.replace(real.source.filename, keypoint_file.name),
                                   filename=keypoint_file.name, size_bytes=len(data),
                                   sha256_prefix=keypoint_file.stem.rsplit("-", 1)[1]),
        builder_kwargs={"min_size": 224, "max_size": 320, "box_detections_per_img": 4, "box_score_thresh": 0.0},
    ))
    try:
        with serve_files({f"/models/{keypoint_file.name}": data}) as (base, requests):
            monkeypatch.setenv("CVHUB_TORCHVISION_URL", f"{base}/models/")
            found = detect(weights.create(record.name), record.class_names, [torch.rand(3, 200, 260)], score=0.0)[0]
            assert found and all(i.keypoints.shape == (17, 3) for i in found)
            assert (tmp_path / "torch" / "hub" / "checkpoints" / keypoint_file.name).read_bytes() == data
            weights.create(record.name)  # the second use reads torch's hub cache
            assert requests == [f"/models/{keypoint_file.name}"]
    finally:
        unregister(record.name)


def test_a_file_whose_hash_digits_do_not_match_is_refused(keypoint_file, monkeypatch):
    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=keypoint_file.parent))
    record = _register_test_record(keypoint_file, "00000000", "keypointrcnn-wrong-test")
    try:
        with pytest.raises(WeightsMismatch, match="not the pinned 00000000"):
            weights.create(record.name)
    finally:
        unregister(record.name)
    # Where the full digest is pinned it decides: right leading digits are not enough.
    digits = keypoint_file.stem.rsplit("-", 1)[1]
    record = _register_test_record(keypoint_file, digits, "keypointrcnn-full-test", sha256=digits + "0" * 56)
    try:
        with pytest.raises(WeightsMismatch, match=f"not the pinned {digits}0000"):
            weights.create(record.name)
    finally:
        unregister(record.name)


def test_panel_shows_keypoints_and_says_whose_accuracy(keypoint_file, monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=keypoint_file.parent))
    record = _register_test_record(keypoint_file, keypoint_file.stem.rsplit("-", 1)[1], "keypointrcnn-panel-test")
    try:
        path = tmp_path / "photo.png"
        Image.fromarray((np.random.default_rng(0).random((180, 240, 3)) * 255).astype(np.uint8)).save(path)
        pictures, tables, infos = panel.detect_batch([str(path)] * 2, [record.name] * 2, [0.0] * 2, [False] * 2,
                                                     [True] * 2, [True, False])
        assert tables[0] and all(row[4] == "—" and row[5].endswith("of 17") for row in tables[0])
        assert "keypoint AP 65.0 on COCO val2017 (published by torchvision)" in infos[0]
        assert "batch of 2" in infos[0]
        # Keypoints off: with boxes off and no masks, nothing is drawn.
        assert np.array_equal(np.asarray(pictures[1]), np.asarray(Image.open(path)))
    finally:
        unregister(record.name)
