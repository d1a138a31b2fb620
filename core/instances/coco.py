"""torchvision's COCO detectors: Mask R-CNN (ResNet-50-FPN, v2) and Keypoint R-CNN (ResNet-50-FPN).

The architectures are torchvision's own builders with no weights; the weights are
torchvision's published COCO files (``*.pth`` from download.pytorch.org), which the operator
puts in ``--weights-dir`` (the records say how) and which are read with
``torch.load(weights_only=True)``: plain tensors, never pickled code. Class and keypoint
names are in :mod:`core.datasets.coco`, checked against torchvision's weights metadata.
"""

from __future__ import annotations

import torch
from torchvision.models.detection import keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2


def maskrcnn_r50_fpn_v2_coco(**kwargs) -> torch.nn.Module:
    """The registry's builder: torchvision's Mask R-CNN v2, 91 COCO ids, no weights (``kwargs`` go to ``MaskRCNN``)."""
    return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91, **kwargs)


def keypointrcnn_r50_fpn_coco(**kwargs) -> torch.nn.Module:
    """The registry's builder: torchvision's Keypoint R-CNN, person + 17 keypoints, no weights."""
    return keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=17, **kwargs)


def load_torchvision_state(path) -> dict[str, torch.Tensor]:
    """A torchvision ``.pth`` state dict, read as tensors only (``weights_only=True`` refuses pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)
