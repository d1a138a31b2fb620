"""The quality check of the shipped Mask R-CNN (the fixed val frames its release scored) would catch a regression.

The check itself runs through the ``evaluate`` command: ``tests/test_instances_panel.py``."""

import weights
from core.instances.evaluate import QUALITY_CHECK_FRAMES, at_short_side, quality_check_score
from core.instances.maskrcnn import SHORT_SIDE
from core.segmentation.data import load_camvid
from weights.release import quality_check

NAME = "maskrcnn-vgg19-camvid"


def test_the_check_sees_the_detector_run_at_half_its_scale(shared, shared_weights):
    """The transform shrinking frames to half its short side (pedestrians a few feature cells tall) leaves the
    one-point band."""
    model = weights.create(NAME)
    val = load_camvid(shared / "data" / "camvid", "val", limit=QUALITY_CHECK_FRAMES)
    with at_short_side(model, SHORT_SIDE // 2):
        score = quality_check_score(model, weights.get_record(NAME), val)
    assert quality_check(NAME)["mask_AP50"] - score["mask_AP50"] > 0.01
