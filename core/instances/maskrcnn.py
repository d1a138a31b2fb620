"""Mask R-CNN (He et al. 2017) for CamVid's objects on the frozen ImageNet VGG-19, built from torchvision's parts.

torchvision's ``MaskRCNN`` with a small backbone of our own: VGG-19 up to ``relu4_4``
(stride 8, frozen, the ImageNet weights of the ``vgg19-caffe`` record) and a trained 1x1
conv to 256 channels. One feature level, so one set of anchors (``ANCHOR_SIZES`` at each of
``ASPECT_RATIOS``) and RoI Align on it: 7x7 for the box head, 14x14 for the mask head. The
heads are slimmer than torchvision's COCO model (a 256-wide box MLP, two 128-channel mask
convs) so that they train on a CPU from cached encoder features and ship in a few MB.

Input: a list of RGB tensors in [0, 1], any size; the transform scales each so its short
side is 540 px (1.5x CamVid's frame height; the long side capped at 16:9 of it, 960 px) and
returns boxes and masks in the input's pixel coordinates.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from core.backbones import create_encoder
from core.backbones.vgg import pretrained_state
from core.datasets.camvid import INSTANCE_CLASSES
from weights.registry import load_safetensors

#: Caffe VGG-19's BGR mean on 0-255 pixels (the ``vgg19-caffe`` record), here in RGB order.
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
#: The encoder's one tap: the last ReLU before pool4, 512 channels at stride 8.
TAP = "relu4_4"
#: The transform's short side: CamVid's frames (480x360) enlarged 1.5x. At stride 8 a pedestrian a few dozen pixels
#: tall at 360 px covers only a few feature cells. Heads trained at 360 and 540 px and scored at 540 found the
#: pedestrians of a held-out training sequence (0006R0) far better than heads trained and scored at 360 (mask AP50
#: 23.5 vs 12.8; cars 28.8 vs 30.6), for 2.25x the encoder's work (README: "CamVid Mask R-CNN: which
#: short side, and which split chose what").
SHORT_SIDE = 540
#: The RPN's anchors on the one feature level: each size (px on the transformed image) at each aspect ratio (height
#: over width, torchvision's convention).
ANCHOR_SIZES = (16, 32, 64, 128, 256)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def max_side(short_side: int) -> int:
    """The transform's cap on the long side for a short side: 16:9 of it, so that a wide photo is not shrunk."""
    return round(short_side * 16 / 9)


class FrozenVGG19Stride8(nn.Module):
    """VGG-19 up to relu4_4 (frozen) + a trained 1x1 conv, GroupNorm, ReLU: Bx3xHxW -> {"0": Bx256xH/8xW/8}.

    Expects what the detector's transform makes of RGB in [0, 1]: 255 * x - the Caffe mean,
    in RGB order; the encoder flips to BGR, the order its weights were trained in.
    """

    out_channels = 256

    def __init__(self):
        super().__init__()
        self.encoder = create_encoder("vgg19", taps=(TAP,), frozen=True)
        # The encoder's activations run into the hundreds; GroupNorm brings them to the heads' scale.
        self.reduce = nn.Sequential(nn.Conv2d(512, 256, 1), nn.GroupNorm(32, 256), nn.ReLU(inplace=True))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part (what training caches once per frame; what core.engines may run faster)."""
        return self.encoder(x.flip(1))[0]

    def head(self, encoded: torch.Tensor) -> OrderedDict:
        return OrderedDict([("0", self.reduce(encoded))])

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.head(self.encode(x))


def maskrcnn_vgg19_camvid(num_classes: int = len(INSTANCE_CLASSES) + 1, detections_per_image: int = 100,
                          anchor_sizes: tuple[int, ...] = ANCHOR_SIZES,
                          aspect_ratios: tuple[float, ...] = ASPECT_RATIOS) -> MaskRCNN:
    """The registry's builder; :func:`load_maskrcnn_vgg19_state` adds the VGG-19 weights to the shipped heads."""
    backbone = FrozenVGG19Stride8()
    c = backbone.out_channels
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=SHORT_SIDE,
        max_size=max_side(SHORT_SIDE),
        image_mean=[m / 255 for m in _CAFFE_MEAN_RGB],
        image_std=[1 / 255] * 3,
        rpn_anchor_generator=AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),)),
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(c * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        box_batch_size_per_image=128,
        box_detections_per_img=detections_per_image,
        mask_roi_pool=MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(c, [128, 128], 1),
        mask_predictor=MaskRCNNPredictor(128, 128, num_classes),
    )
    model.backbone_stride = backbone.encoder.output_stride  # 8: relu4_4 is three 2x poolings down
    return model


def trained_state(model: MaskRCNN) -> dict[str, torch.Tensor]:
    """Everything but the frozen encoder: what is trained and shipped."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.encoder.")}


def load_maskrcnn_vgg19_state(path, vgg19_path) -> dict[str, torch.Tensor]:
    """Shipped heads (fp16 file) + the encoder from ``vgg19_path``, the ImageNet VGG-19 the record names as its
    extra file (resolved from the same weights folder as ``path``)."""
    state = load_safetensors(path)
    encoder = pretrained_state("vgg19-caffe", up_to=TAP, path=vgg19_path)
    state.update({f"backbone.encoder.{k}": v for k, v in encoder.items()})
    return state
