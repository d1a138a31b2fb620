"""The segmentation weights the project ships score as their release recorded, on real val frames."""

from dataclasses import replace

import pytest

import weights
from core.segmentation.evaluate import QUALITY_CHECK_FRAMES, evaluate_folders
from weights import registry
from weights.release import quality_check

#: Models whose trained weights the project ships (a pinned sha256 in their record).
SHIPPED = [n for n in weights.list_models("segmentation") if weights.get_record(n).sha256]


def test_the_project_ships_at_least_enet():
    assert "enet-camvid" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_within_a_point_of_its_release(name, shared, shared_weights):
    """The file as shipped, through the app's own loading and pre-processing, on the fixed frames its release
    scored: a point of mIoU lost anywhere (weights, scale, normalisation, a refactored layer) fails here."""
    recorded = quality_check(name)
    assert recorded is not None and recorded["frames"] == QUALITY_CHECK_FRAMES, f"{name} has no quality check"
    camvid = shared / "data" / "camvid"
    result = evaluate_folders(name, camvid / "val", camvid / "valannot", limit=QUALITY_CHECK_FRAMES)
    assert result["frames"] == QUALITY_CHECK_FRAMES
    assert abs(result["mIoU"] - recorded["mIoU"]) <= 0.01, (name, result["mIoU"], recorded["mIoU"])


def test_the_check_sees_a_model_run_at_the_wrong_scale(shared, shared_weights, monkeypatch):
    """ENet run at half its working size (the regression the old test missed) leaves the one-point band."""
    record = weights.get_record("enet-camvid")
    monkeypatch.setitem(registry._REGISTRY, "enet-camvid", replace(record, input_size=(180, 240)))
    camvid = shared / "data" / "camvid"
    result = evaluate_folders("enet-camvid", camvid / "val", camvid / "valannot", limit=QUALITY_CHECK_FRAMES)
    assert quality_check("enet-camvid")["mIoU"] - result["mIoU"] > 0.01
