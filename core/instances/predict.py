"""Mask R-CNN on photos: detections as plain instances, the picture with masks and boxes, the JSON of the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

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
    mask: torch.Tensor  # HxW bool

    @property
    def mask_area(self) -> int:
        return int(self.mask.sum())

    def as_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4), "box": [round(v, 1) for v in self.box],
                "mask_area": self.mask_area}


@torch.inference_mode()
def detect(model, class_names, images: list[torch.Tensor], *, score: float = 0.5) -> list[list[Instance]]:
    """3xHxW RGB tensors in [0, 1] (any sizes; one batched forward) -> instances with score >= ``score``, best first.

    ``class_names[i - 1]`` names label i (0 is background). The model caps the count per image
    (``box_detections_per_img``).
    """
    param = next(model.parameters())
    outputs = model([x.to(param.device, param.dtype) for x in images])
    results = []
    for out in outputs:
        keep = out["scores"] >= score
        masks = out["masks"][keep, 0] > 0.5
        results.append([
            Instance(class_names[int(label) - 1], float(s), tuple(float(v) for v in box), mask.cpu())
            for label, s, box, mask in zip(out["labels"][keep], out["scores"][keep], out["boxes"][keep], masks)
        ])
    return results


def draw(image: torch.Tensor, instances: list[Instance], *, masks: bool = True, boxes: bool = True,
         alpha: float = 0.5) -> torch.Tensor:
    """uint8 3xHxW -> the same with each instance's mask and/or box and "label score" in its own colour."""
    if not instances:
        return image
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(instances))]
    if masks:
        image = draw_segmentation_masks(image, torch.stack([i.mask for i in instances]), alpha=alpha, colors=colors)
    if boxes:
        image = draw_bounding_boxes(image, torch.tensor([i.box for i in instances]),
                                    labels=[f"{i.label} {i.score:.2f}" for i in instances], colors=colors, width=2)
    return image
