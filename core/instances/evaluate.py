"""Box and mask AP of instance predictions against CamVid-style label maps, with pycocotools (COCO's own code).

AP is COCO's: precision averaged over recall and over IoU thresholds 0.50:0.95; AP50 at
IoU 0.50 alone; "all" areas, up to 100 detections per image. A class with no ground truth
in the evaluated frames gets ``None``.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import weights
from core import runtime
from core.instances.camvid import instances_from_labels
from core.instances.maskrcnn import SHORT_SIDE, max_side
from core.segmentation.data import load_pairs, pair_files


def _rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_ap(predictions: list[dict], targets: list[dict], class_names: tuple[str, ...]) -> dict:
    """Per-image predictions (boxes, labels, scores, masks: NxHxW bool or Nx1xHxW probabilities)
    and targets (boxes, labels, masks NxHxW) -> {"bbox"|"segm": {"AP", "AP50", "per_class": {name: {"AP", "AP50"}}},
    "instances": {name: ground-truth count}}.

    Labels are 1-based indices into ``class_names`` (0 is background).
    """
    images, gt_anns, dt_anns = [], [], []
    for image_id, (pred, target) in enumerate(zip(predictions, targets)):
        h, w = target["masks"].shape[-2:]
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        for box, label, mask in zip(target["boxes"], target["labels"], target["masks"]):
            m = mask.numpy().astype(bool)
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": int(label),
                            "bbox": _xywh(box), "area": float(m.sum()), "iscrowd": 0, "segmentation": _rle(m)})
        masks = pred["masks"]
        if masks.dim() == 4:
            masks = masks[:, 0] > 0.5
        for box, label, score, mask in zip(pred["boxes"], pred["labels"], pred["scores"], masks):
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": image_id, "category_id": int(label),
                            "score": float(score), "bbox": _xywh(box), "segmentation": _rle(mask.numpy())})
    categories = [{"id": i, "name": n} for i, n in enumerate(class_names, start=1)]
    results = {"instances": {n: sum(a["category_id"] == i for a in gt_anns)
                             for i, n in enumerate(class_names, start=1)}}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        gt.createIndex()
        for iou_type in ("bbox", "segm"):
            anns = [dict(a) for a in dt_anns]
            for a in anns:
                if iou_type == "bbox":
                    a.pop("segmentation")
                    a["area"] = a["bbox"][2] * a["bbox"][3]
                else:
                    a["area"] = float(mask_util.area(a["segmentation"]))
            dt = gt.loadRes(anns) if anns else COCO()
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            results[iou_type] = _per_class(ev, class_names)
    return results


def _per_class(ev: COCOeval, class_names) -> dict:
    # precision: [IoU thresholds, recall points, classes, area ranges, max dets]; -1 = no ground truth.
    precision = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k]
        if (p > -1).sum() == 0:
            per_class[name] = {"AP": None, "AP50": None}
            continue
        p50 = p[0]
        per_class[name] = {"AP": round(float(p[p > -1].mean()), 4), "AP50": round(float(p50[p50 > -1].mean()), 4)}
    return {"AP": round(float(ev.stats[0]), 4), "AP50": round(float(ev.stats[1]), 4), "per_class": per_class}


@contextlib.contextmanager
def at_short_side(model, short_side: int | None):
    """Inside, the detector's transform resizes every image to this short side (its long side capped at 16:9 of
    it); None keeps the detector's own."""
    transform = model.transform
    before = transform.min_size, transform.max_size
    if short_side:
        transform.min_size, transform.max_size = (short_side,), max_side(short_side)
    try:
        yield
    finally:
        transform.min_size, transform.max_size = before


@torch.inference_mode()
def evaluate_model(model, class_names, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 4) -> dict:
    """uint8 Nx3xHxW frames + NxHxW CamVid label maps -> :func:`coco_ap` of the model's detections.

    Every detection the model keeps (its own score floor, 0.05) counts: AP needs the low-score tail.
    """
    model.eval()
    param = next(model.parameters())
    predictions = []
    for i in range(0, len(images), batch_size):
        outputs = model([x.to(param.device, param.dtype) / 255 for x in images[i : i + batch_size]])
        predictions += [{k: v.float().cpu() for k, v in out.items()} for out in outputs]
    return coco_ap(predictions, [instances_from_labels(y) for y in labels], class_names)


#: The fixed set a release scores its file on and the tests score it on again: the first frames of CamVid val,
#: which hold 22 cars, 23 pedestrians and 36 bicyclists; a detector run at the wrong scale loses tens of AP points
#: there.
QUALITY_CHECK_FRAMES = 12


def quality_check_score(model, record, val) -> dict:
    """Box and mask AP50 (all classes) of ``model`` on the first :data:`QUALITY_CHECK_FRAMES` frames of ``val`` (a
    SegmentationSet), as :func:`core.segmentation.evaluate.quality_check_score` scores a segmentation model."""
    n = QUALITY_CHECK_FRAMES
    result = evaluate_model(model, record.class_names, val.images[:n], val.labels[:n])
    return {"split": "CamVid val", "frames": len(val.images[:n]), "mask_AP50": result["segm"]["AP50"],
            "box_AP50": result["bbox"]["AP50"]}


def percent(value: float | None) -> str:
    """An AP as a percentage with one decimal; "-" for a class without ground truth."""
    return "-" if value is None or value < 0 else f"{100 * value:.1f}"


def table(result: dict) -> str:
    """The JSON result as a text table: one row per class, box and mask AP / AP50 in %."""
    lines = [f"{'class':<12} {'box AP':>7} {'box AP50':>9} {'mask AP':>8} {'mask AP50':>10}"]
    for name, box in result["bbox"]["per_class"].items():
        mask = result["segm"]["per_class"][name]
        lines.append(f"{name:<12} {percent(box['AP']):>7} {percent(box['AP50']):>9} "
                     f"{percent(mask['AP']):>8} {percent(mask['AP50']):>10}")
    lines.append(f"{'all':<12} {percent(result['bbox']['AP']):>7} {percent(result['bbox']['AP50']):>9} "
                 f"{percent(result['segm']['AP']):>8} {percent(result['segm']['AP50']):>10}")
    return "\n".join(lines)


def main(args) -> int:
    torch.set_num_threads(args.threads)
    pairs = pair_files(args.images, args.labels)
    data = load_pairs(pairs[: args.limit] if args.limit else pairs)
    record = weights.get_record(args.model)
    settings = runtime.settings()
    model = weights.create(args.model, device=runtime.pick_device(settings.device), weights_dir=settings.weights_dir)
    with at_short_side(model, args.short_side):
        result = {"model": args.model, "frames": len(data), "short_side": model.transform.min_size[0],
                  **evaluate_model(model, record.class_names, data.images, data.labels)}
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--model", default="maskrcnn-vgg19-camvid")
    p.add_argument("--images", required=True, help="folder of frames")
    p.add_argument("--labels", required=True, help="folder of CamVid label maps (same file stems)")
    runtime.add_arguments(p)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N frames")
    p.add_argument("--short-side", type=int, default=None,
                   help=f"resize the frames to this short side instead of the detector's own ({SHORT_SIDE})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
