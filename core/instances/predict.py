"""Mask / Keypoint R-CNN on photos: detections as plain instances (one per object), the picture with masks, boxes,
labels and skeletons, the JSON of the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import ImageDraw, ImageFont
from torchvision.ops import box_iou, nms
from torchvision.transforms.functional import pil_to_tensor, to_pil_image
from torchvision.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

import weights
from core.datasets.coco import COCO_SKELETON
from weights.availability import availability

#: Distinct colours for neighbouring instances (Kelly's list of maximally different colours).
PALETTE = (
    (255, 179, 0), (128, 62, 117), (255, 104, 0), (166, 189, 215), (193, 0, 32), (206, 162, 98),
    (0, 125, 52), (246, 118, 142), (0, 83, 138), (255, 122, 92), (83, 55, 122), (255, 142, 0),
    (179, 40, 81), (244, 200, 0), (127, 24, 13), (147, 170, 0), (89, 51, 21), (241, 58, 19),
)


#: Two detections whose boxes overlap this much (IoU) are one object, whatever classes they were given.
DUPLICATE_IOU = 0.7
#: Two detections of different classes are one object when this share of the smaller mask lies in the other: on
#: CamVid val frames a cyclist's "pedestrian" lies 60-100 % inside its "bicyclist"; a car and the pedestrian before
#: it share under 30 %.
DUPLICATE_INSIDE = 0.6


@dataclass
class Instance:
    """One detected object, in the input image's pixel coordinates."""

    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    mask: torch.Tensor | None = None  # HxW bool (Mask R-CNN)
    keypoints: torch.Tensor | None = None  # Kx3: x, y, score (Keypoint R-CNN)

    @property
    def mask_area(self) -> int | None:
        return None if self.mask is None else int(self.mask.sum())

    def as_dict(self) -> dict:
        row = {"label": self.label, "score": round(self.score, 4), "box": [round(v, 1) for v in self.box],
               "mask_area": self.mask_area}
        if self.keypoints is not None:
            row["keypoints"] = [[round(float(v), 1) for v in k] for k in self.keypoints]
        return row


def distinct(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None = None, *,
             iou: float = DUPLICATE_IOU, inside: float = DUPLICATE_INSIDE) -> torch.Tensor:
    """Indices of the detections that are not duplicates of a better-scored one, best first.

    The detector's NMS runs per class, so one object can come out twice under two names (a CamVid cyclist as
    "bicyclist" and, nested in it, "pedestrian"). A detection is dropped when a better one of any class has a box of
    IoU >= ``iou`` with it (class-agnostic NMS), or when one of another class shares ``inside`` or more of the smaller
    of their two masks. ``boxes`` N x 4 (x1, y1, x2, y2), ``scores`` N, ``labels`` N, ``masks`` N x H x W bool or None.
    """
    order = nms(boxes.float(), scores.float(), iou)
    if masks is None or len(order) < 2:
        return order
    areas = masks.flatten(1).sum(1)
    touching = box_iou(boxes.float(), boxes.float()) > 0
    kept: list[int] = []
    for j in order.tolist():
        if not any(labels[i] != labels[j] and touching[i, j]
                   and (masks[i] & masks[j]).sum() >= inside * min(areas[i], areas[j]) for i in kept):
            kept.append(j)
    return torch.tensor(kept, dtype=torch.long)


@torch.inference_mode()
def detect(model, class_names, images: list[torch.Tensor], *, score: float = 0.5) -> list[list[Instance]]:
    """3xHxW RGB tensors in [0, 1] (any sizes; one batched forward) -> instances with score >= ``score``, best first.

    ``class_names[i - 1]`` names label i (0 is background). Masks and keypoints come with the
    models that predict them. One object gives one instance (:func:`distinct`). The model caps the
    count per image (``box_detections_per_img``).
    """
    param = next(model.parameters())
    outputs = model([x.to(param.device, param.dtype) for x in images])
    results = []
    for out in outputs:
        keep = out["scores"] >= score
        out = {k: v[keep].cpu() for k, v in out.items()}  # one transfer per output, of the kept detections only
        masks = out["masks"][:, 0] > 0.5 if "masks" in out else None
        keep = distinct(out["boxes"], out["scores"], out["labels"], masks)
        out = {k: v[keep] for k, v in out.items()}
        n = len(out["scores"])
        masks = masks[keep] if masks is not None else [None] * n
        if "keypoints" in out:  # x, y, and torchvision's per-keypoint score in place of its constant visibility
            points = torch.cat([out["keypoints"][..., :2], out["keypoints_scores"][..., None]], dim=2)
        else:
            points = [None] * n
        results.append([
            Instance(class_names[label - 1], s, tuple(box), mask, kp)
            for label, s, box, mask, kp in zip(out["labels"].tolist(), out["scores"].tolist(), out["boxes"].tolist(),
                                                masks, points)
        ])
    return results


def label_size(height: int, width: int) -> int:
    """Label text height in px for a picture of ``height`` x ``width``: 3.5 % of its short side, at least 12.

    A picture is shown scaled to its box, so labels in a fixed pixel size were unreadable on a big photo
    shown small (or projected): in proportion they read the same on every picture.
    """
    return max(12, round(0.035 * min(height, width)))


def draw_labels(image: torch.Tensor, boxes, texts: list[str], colors, size: int) -> torch.Tensor:
    """uint8 3xHxW -> the same with each text on a patch of its colour at its box's top-left corner.

    The patch sits above the box where there is room, else inside it; a patch that would cover one drawn
    before moves down below it, so the labels of nearby objects stay readable.
    """
    picture = to_pil_image(image)
    pen = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=size)
    pad = max(1, size // 6)
    placed: list[tuple[float, float, float, float]] = []
    for (x1, y1, _, _), text, color in zip(boxes, texts, colors):
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
        w, h = right - left + 2 * pad, bottom - top + 2 * pad
        x = min(max(x1, 0), max(picture.width - w, 0))
        y = y1 - h if y1 - h >= 0 else max(y1, 0)
        for _ in placed:  # each pass moves it below the patches it covers: at most one pass per patch
            covered = [p for p in placed if x < p[2] and p[0] < x + w and y < p[3] and p[1] < y + h]
            if not covered:
                break
            y = max(p[3] for p in covered)
        y = min(y, max(picture.height - h, 0))
        pen.rectangle((x, y, x + w, y + h), fill=tuple(color))
        ink = (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 140 else (255, 255, 255)
        pen.text((x + pad - left, y + pad - top), text, fill=ink, font=font)
        placed.append((x, y, x + w, y + h))
    return pil_to_tensor(picture)


def draw(image: torch.Tensor, instances: list[Instance], *, masks: bool = True, boxes: bool = True,
         keypoints: bool = True, alpha: float = 0.5, skeleton=COCO_SKELETON,
         keypoint_score: float = 0.0) -> torch.Tensor:
    """uint8 3xHxW -> the same with each instance's mask, box and "label score", and skeleton, in its own colour.

    Labels and lines grow with the picture (:func:`label_size`). A keypoint is drawn (with the ``skeleton``
    edges between drawn keypoints) when its score exceeds ``keypoint_score``: Keypoint R-CNN scores a hidden
    or off-body point low.
    """
    if not instances:
        return image
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(instances))]
    size = label_size(*image.shape[-2:])
    line = max(2, size // 8)
    with_masks = [(i, c) for i, c in zip(instances, colors) if i.mask is not None]
    if masks and with_masks:
        image = draw_segmentation_masks(image, torch.stack([i.mask for i, _ in with_masks]), alpha=alpha,
                                        colors=[c for _, c in with_masks])
    if boxes:
        image = draw_bounding_boxes(image, torch.tensor([i.box for i in instances]), colors=colors, width=line)
        image = draw_labels(image, [i.box for i in instances], [f"{i.label} {i.score:.2f}" for i in instances],
                            colors, size)
    if keypoints:
        for inst, color in zip(instances, colors):
            if inst.keypoints is not None:
                seen = inst.keypoints[None, :, 2] > keypoint_score
                image = draw_keypoints(image, inst.keypoints[None, :, :2], connectivity=skeleton, colors=color,
                                       radius=line + 1, width=line, visibility=seen)
    return image


def default_model(*, downloadable: bool = False) -> str:
    """The production default where it can run (torchvision's COCO Mask R-CNN), else the project's own.

    ``downloadable``: count a model whose files this host may fetch on first use and whose server answers (the
    app; :mod:`weights.availability` asks the server once per process, so a host without internet gets the model
    that is here instead of an Error on its first click); without it only files on disk count (a CLI run stays
    offline unless told otherwise).
    """
    preferred = ("maskrcnn-r50-fpn-v2-coco", "maskrcnn-vgg19-camvid")
    if downloadable:
        return next((n for n in preferred if availability(n).runnable), preferred[-1])
    return next((n for n in preferred if weights.is_available(weights.get_record(n))), preferred[-1])
