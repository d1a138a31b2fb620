"""torchvision's COCO detectors: Mask R-CNN (ResNet-50-FPN, v2) and Keypoint R-CNN (ResNet-50-FPN).

The architectures are torchvision's own builders with no weights; the weights are
torchvision's published COCO files (``*.pth`` from download.pytorch.org), which the operator
puts in ``--weights-dir`` (the records say how) and which are read with
``torch.load(weights_only=True)``: plain tensors, never pickled code. Class and keypoint
names come from torchvision's weights metadata, so they match the files.
"""

from __future__ import annotations

import torch
from torchvision.models.detection import (KeypointRCNN_ResNet50_FPN_Weights, MaskRCNN_ResNet50_FPN_V2_Weights,
                                          keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2)

MASKRCNN_WEIGHTS = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
KEYPOINT_WEIGHTS = KeypointRCNN_ResNet50_FPN_Weights.COCO_V1

#: COCO's 80 classes by label id (label i is ``COCO_CLASSES[i - 1]``; "N/A" fills the 10 ids COCO skips).
COCO_CLASSES = tuple(MASKRCNN_WEIGHTS.meta["categories"][1:])
KEYPOINT_NAMES = tuple(KEYPOINT_WEIGHTS.meta["keypoint_names"])

#: COCO's person skeleton (``person_keypoints`` annotations), as pairs of 0-based keypoint indices.
COCO_SKELETON = tuple((a - 1, b - 1) for a, b in (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10), (9, 11),
    (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
))


def maskrcnn_r50_fpn_v2_coco(**kwargs) -> torch.nn.Module:
    """The registry's builder: torchvision's Mask R-CNN v2, 91 COCO ids, no weights (``kwargs`` go to ``MaskRCNN``)."""
    return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91, **kwargs)


def keypointrcnn_r50_fpn_coco(**kwargs) -> torch.nn.Module:
    """The registry's builder: torchvision's Keypoint R-CNN, person + 17 keypoints, no weights."""
    return keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=17, **kwargs)


def load_torchvision_state(path) -> dict[str, torch.Tensor]:
    """A torchvision ``.pth`` state dict, read as tensors only (``weights_only=True`` refuses pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)
