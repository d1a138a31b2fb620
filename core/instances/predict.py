"""Mask / Keypoint R-CNN on photos: detections as plain instances, the picture with masks, boxes and skeletons,
the JSON of the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

import weights
from core.datasets.coco import COCO_SKELETON

#: Distinct colours for neighbouring instances (Kelly's list of maximally different colours).
PALETTE = (
    (255, 179, 0), (128, 62, 117), (255, 104, 0), (166, 189, 215), (193, 0, 32), (206, 162, 98),
    (0, 125, 52), (246, 118, 142), (0, 83, 138), (255, 122, 92), (83, 55, 122), (255, 142, 0),
    (179, 40, 81), (244, 200, 0), (127, 24, 13), (147, 170, 0), (89, 51, 21), (241, 58, 19),
)


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


@torch.inference_mode()
def detect(model, class_names, images: list[torch.Tensor], *, score: float = 0.5) -> list[list[Instance]]:
    """3xHxW RGB tensors in [0, 1] (any sizes; one batched forward) -> instances with score >= ``score``, best first.

    ``class_names[i - 1]`` names label i (0 is background). Masks and keypoints come with the
    models that predict them. The model caps the count per image (``box_detections_per_img``).
    """
    param = next(model.parameters())
    outputs = model([x.to(param.device, param.dtype) for x in images])
    results = []
    for out in outputs:
        keep = out["scores"] >= score
        out = {k: v[keep].cpu() for k, v in out.items()}  # one transfer per output, of the kept detections only
        n = len(out["scores"])
        masks = out["masks"][:, 0] > 0.5 if "masks" in out else [None] * n
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


def draw(image: torch.Tensor, instances: list[Instance], *, masks: bool = True, boxes: bool = True,
         keypoints: bool = True, alpha: float = 0.5, skeleton=COCO_SKELETON,
         keypoint_score: float = 0.0) -> torch.Tensor:
    """uint8 3xHxW -> the same with each instance's mask, box and "label score", and skeleton, in its own colour.

    A keypoint is drawn (with the ``skeleton`` edges between drawn keypoints) when its score
    exceeds ``keypoint_score``: Keypoint R-CNN scores a hidden or off-body point low.
    """
    if not instances:
        return image
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(instances))]
    with_masks = [(i, c) for i, c in zip(instances, colors) if i.mask is not None]
    if masks and with_masks:
        image = draw_segmentation_masks(image, torch.stack([i.mask for i, _ in with_masks]), alpha=alpha,
                                        colors=[c for _, c in with_masks])
    if boxes:
        image = draw_bounding_boxes(image, torch.tensor([i.box for i in instances]),
                                    labels=[f"{i.label} {i.score:.2f}" for i in instances], colors=colors, width=2)
    if keypoints:
        for inst, color in zip(instances, colors):
            if inst.keypoints is not None:
                image = draw_keypoints(image, inst.keypoints[None, :, :2], connectivity=skeleton, colors=color,
                                       radius=3, width=2, visibility=inst.keypoints[None, :, 2] > keypoint_score)
    return image


def default_model(*, downloadable: bool = False) -> str:
    """The production default where its weights are here (torchvision's COCO Mask R-CNN), else the project's own.

    ``downloadable``: count a model whose files this host may still fetch on first use (the app, online); without
    it only files on disk count (a CLI run stays offline unless told otherwise).
    """
    preferred = ("maskrcnn-r50-fpn-v2-coco", "maskrcnn-vgg19-camvid")
    usable = weights.is_obtainable if downloadable else weights.is_available
    return next((n for n in preferred if usable(weights.get_record(n))), preferred[-1])
