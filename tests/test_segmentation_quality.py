"""The segmentation weights the project ships really segment CamVid: scored on real val frames, as released."""

import pytest

import weights
from core.segmentation.evaluate import evaluate_folders

#: Models whose trained weights the project ships (a pinned sha256 in their record).
SHIPPED = [n for n in weights.list_models("segmentation") if weights.get_record(n).sha256]


def test_the_project_ships_at_least_enet():
    assert "enet-camvid" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_like_its_record_on_real_val_frames(name, shared, shared_weights):
    camvid = shared / "data" / "camvid"
    result = evaluate_folders(name, camvid / "val", camvid / "valannot", limit=12)
    record = weights.get_record(name)
    # Twelve frames are not the whole split, so allow some spread around the released val numbers;
    # random or broken weights land near 1/11 mIoU and far below 0.7 pixel accuracy.
    assert result["global_accuracy"] > 0.75
    assert abs(result["global_accuracy"] - record.metrics["global_accuracy"]) < 0.1
    assert result["mIoU"] > 0.3
