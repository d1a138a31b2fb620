"""The frozen ImageNet VGG-19 encoder that FCN-8s, SegNet and U-Net share when trained on a CPU budget.

timm's ``vgg19`` with ``features_only=True`` returns the five ReLU maps that VGG max-pools
(relu1_2, relu2_2, relu3_4, relu4_4, relu5_4: 64..512 channels at strides 1..16); it takes
the Caffe VGG-19 weights of the ``vgg19-caffe`` record and stays frozen. Training runs it
once per frame and caches those "taps" (:mod:`core.segmentation.train_frozen`); each
network's ``decode(taps)`` is the part that trains, and the only part that ships.
"""

from __future__ import annotations

import torch
from torch import nn

def vgg19_taps() -> nn.Module:
    """Frozen VGG-19 ``features_only`` encoder, random weights (:func:`load_frozen_vgg19_state` adds ImageNet's)."""
    import timm

    encoder = timm.create_model("vgg19", features_only=True, pretrained=False, out_indices=(0, 1, 2, 3, 4))
    encoder.requires_grad_(False)
    return encoder


def vgg19_to_timm(vgg19_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision-layout VGG-19 ``features`` keys (``0.weight``) -> timm features_only keys (``features_0.weight``)."""
    return {f"features_{k}": v for k, v in vgg19_state.items()}


def load_frozen_vgg19_state(path) -> dict[str, torch.Tensor]:
    """The shipped file (every trained tensor, fp16) + ``encoder.*`` from the ImageNet VGG-19, resolved like any weights."""
    from weights.registry import get_record, load_safetensors
    from weights.resolve import resolve

    state = load_safetensors(path)
    encoder = vgg19_to_timm(load_safetensors(resolve(get_record("vgg19-caffe"))))
    state.update({f"encoder.{k}": v for k, v in encoder.items()})
    return state
