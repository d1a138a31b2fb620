"""Mask R-CNN for CamVid: instances from label maps, COCO AP on hand-made cases, the cached-feature training path."""

import numpy as np
import pytest
import torch

from core.datasets.camvid import CAMVID_CLASSES, INSTANCE_CLASSES
from core.instances.camvid import instances_from_labels
from core.instances.evaluate import at_short_side, coco_ap
from core.instances.maskrcnn import maskrcnn_vgg19_camvid, trained_state
from core.instances.predict import Instance, distinct, draw, draw_labels, label_size
from core.instances.train import heads_forward

CAR, PED, ROAD = (CAMVID_CLASSES.index(n) for n in ("Car", "Pedestrian", "Road"))


def test_instances_are_connected_components_and_tiny_ones_are_dropped():
    y = np.full((40, 60), ROAD, np.uint8)
    y[2:12, 3:23] = CAR       # car A: 10x20 = 200 px
    y[12:22, 23:33] = CAR     # car B touches A only at a corner: 8-connected, so A and B are one instance
    y[30:38, 40:60] = CAR     # car C, alone: 160 px
    y[25:27, 2:5] = CAR       # 6 px of stray car label: under MIN_AREA, dropped
    y[20:35, 5:9] = PED       # a pedestrian, 60 px
    t = instances_from_labels(y)
    assert t["labels"].tolist() == [1, 1, 2]
    assert t["boxes"].tolist() == [[3, 2, 33, 22], [40, 30, 60, 38], [5, 20, 9, 35]]
    assert t["masks"].shape == (3, 40, 60) and t["masks"].dtype == torch.uint8
    assert t["masks"].sum((1, 2)).tolist() == [300, 160, 60]
    empty = instances_from_labels(np.full((8, 8), ROAD, np.uint8))
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 8, 8)


def _target(boxes, masks, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "masks": torch.stack(masks).to(torch.uint8)}


def _box_mask(box, size=(50, 50)):
    m = torch.zeros(size, dtype=torch.bool)
    m[box[1]:box[3], box[0]:box[2]] = True
    return m


def test_coco_ap_by_hand():
    """One car; the detector's best guess is wrong, its second is right.

    Ranked by score: a false positive (precision 0/1), then the true positive (recall 1 at precision
    1/2). COCO's interpolated precision is then 1/2 at every recall level, so AP50 = 0.5. A perfect
    single detection gives 1.0; a class without ground truth gives None.
    """
    gt_box, wrong_box = [10, 10, 30, 30], [35, 35, 48, 48]
    target = _target([gt_box], [_box_mask(gt_box)], [1])
    perfect = {"boxes": torch.tensor([gt_box], dtype=torch.float32), "labels": torch.tensor([1]),
               "scores": torch.tensor([0.9]), "masks": _box_mask(gt_box)[None]}
    result = coco_ap([perfect], [target], INSTANCE_CLASSES)
    assert result["segm"]["per_class"]["car"] == {"AP": 1.0, "AP50": 1.0}
    assert result["bbox"]["per_class"]["pedestrian"] == {"AP": None, "AP50": None}

    second_right = {"boxes": torch.tensor([wrong_box, gt_box], dtype=torch.float32), "labels": torch.tensor([1, 1]),
                    "scores": torch.tensor([0.9, 0.8]), "masks": torch.stack([_box_mask(wrong_box), _box_mask(gt_box)])}
    result = coco_ap([second_right], [target], INSTANCE_CLASSES)
    assert result["segm"]["per_class"]["car"]["AP50"] == pytest.approx(0.5, abs=0.01)
    assert result["bbox"]["per_class"]["car"]["AP50"] == pytest.approx(0.5, abs=0.01)


def test_draw_colours_each_instance_and_leaves_an_empty_list_alone():
    image = torch.zeros(3, 40, 50, dtype=torch.uint8)
    a = Instance("car", 0.9, (2, 2, 20, 20), _box_mask([2, 2, 20, 20], (40, 50)))
    b = Instance("car", 0.8, (25, 10, 45, 30), _box_mask([25, 10, 45, 30], (40, 50)))
    out = draw(image, [a, b], boxes=False)
    assert not torch.equal(out[:, 10, 10], out[:, 20, 35])  # two instances, two colours
    assert out[:, 35, 5].sum() == 0  # outside every mask: untouched
    assert torch.equal(draw(image, []), image)
    assert a.as_dict() == {"label": "car", "score": 0.9, "box": [2, 2, 20, 20], "mask_area": 324}


def test_cached_feature_path_is_the_detector_itself():
    """Training runs the heads on cached encoder features; they must see exactly what the full model sees."""
    torch.manual_seed(0)
    model = maskrcnn_vgg19_camvid().eval()
    assert not any(k.startswith("backbone.encoder") for k in trained_state(model))
    image = torch.rand(3, 90, 120)  # scaled by the transform to 540x720, as it scales a CamVid frame
    with torch.no_grad():
        full = model([image])[0]
        image_list, _ = model.transform([image])
        cached = heads_forward(model, model.backbone.encode(image_list.tensors).half(), image_list.image_sizes)
        cached = model.transform.postprocess(cached, image_list.image_sizes, [(90, 120)])[0]
    assert len(full["boxes"]) > 0 and full["masks"].shape[-2:] == (90, 120)  # boxes in the input's pixels
    assert full["boxes"].max() <= 120
    n = min(len(full["boxes"]), len(cached["boxes"]), 10)
    # fp16 features change scores in the last digits only: the same top detections, the same boxes.
    assert torch.allclose(full["boxes"][:n], cached["boxes"][:n], atol=1.0)
    assert torch.equal(full["labels"][:n], cached["labels"][:n])

    model.train()
    target = instances_from_labels(np.pad(np.full((30, 40), CAR, np.uint8), ((100, 230), (200, 240))))
    losses = heads_forward(model, model.backbone.encode(image_list.tensors).half(), image_list.image_sizes, [target])
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.reduce[0].weight.grad is not None and model.backbone.encoder[0].weight.grad is None


def test_a_detector_runs_at_another_short_side_inside_and_at_its_own_after():
    model = maskrcnn_vgg19_camvid().eval()
    image = torch.rand(3, 90, 120)
    with at_short_side(model, 180), torch.no_grad():
        assert model.transform([image])[0].image_sizes == [(180, 240)]  # 90 px -> 180 px, 120 -> 240 (under 320)
        assert model([image])[0]["masks"].shape[-2:] == (90, 120)  # answers come back at the input's size
    assert model.transform.min_size == (540,) and model.transform.max_size == 960  # 16:9 of 540
    with at_short_side(model, None):
        assert model.transform.min_size == (540,)


def test_duplicates_across_classes_are_one_instance_by_hand():
    """Per-class NMS keeps a cyclist twice: "bicyclist" (rider and bike) and, nested in it, "pedestrian"."""
    size = (100, 120)
    bicyclist = [20, 10, 60, 90]
    rider = [25, 10, 55, 60]          # inside the bicyclist's box: box IoU 0.47, under any usual NMS threshold
    walker = [70, 20, 90, 80]         # beside it, another class: kept
    child = [30, 12, 50, 40]          # a bicyclist nested in the bicyclist: same class, left to the detector's NMS
    boxes = torch.tensor([bicyclist, rider, walker, child], dtype=torch.float32)
    masks = torch.stack([_box_mask(b, size) for b in (bicyclist, rider, walker, child)])
    scores = torch.tensor([0.9, 0.6, 0.8, 0.5])
    labels = torch.tensor([3, 2, 2, 3])
    assert distinct(boxes, scores, labels, masks).tolist() == [0, 2, 3]
    # The better-scored one stays, whichever it is.
    assert distinct(boxes[:3], torch.tensor([0.5, 0.9, 0.8]), labels[:3], masks[:3]).tolist() == [1, 2]
    # Without masks (Keypoint R-CNN): class-agnostic NMS on the boxes only, at IoU 0.7.
    same_box = torch.tensor([[0, 0, 50, 50], [1, 1, 50, 50], [0, 0, 50, 30]], dtype=torch.float32)
    assert distinct(same_box, torch.tensor([0.6, 0.9, 0.8]), torch.tensor([1, 2, 1])).tolist() == [1, 2]


def test_labels_grow_with_the_picture_and_do_not_cover_each_other():
    assert label_size(360, 480) == 13 and label_size(960, 1280) == 34 and label_size(40, 50) == 12

    def label_rows(height, width):
        image = torch.zeros(3, height, width, dtype=torch.uint8)
        box = (width * 0.2, height * 0.5, width * 0.6, height * 0.9)
        out = draw(image, [Instance("pedestrian", 0.9, box)], masks=False)
        column = out[:, : int(box[1]) - 1, int(box[0]) + 2]  # above the box: the label's patch
        return int((column.sum(0) > 0).sum())

    small, large = label_rows(360, 480), label_rows(960, 1280)
    assert 13 <= small < 24 and 34 <= large < 60 and large > 2 * small
    # Two objects with nearly the same corner: the second label moves below the first instead of covering it.
    black = torch.zeros(3, 200, 300, dtype=torch.uint8)
    red, blue = (255, 0, 0), (0, 0, 255)
    out = draw_labels(black, [(50, 100, 150, 190), (52, 102, 150, 190)], ["car 0.90", "car 0.80"], [red, blue], 20)
    red_px = int(((out[0] == 255) & (out[2] == 0)).sum())
    blue_px = int(((out[2] == 255) & (out[0] == 0)).sum())
    assert red_px > 0.6 * blue_px and blue_px > 0.6 * red_px  # both patches whole (the text is drawn on each)
