"""VGG-19 activations for style transfer: the ReLU outputs of named conv layers, and nothing deeper.

The lecture names layers ``conv1_1`` ... ``conv5_4`` and means their ReLU outputs (Gatys
et al. 2016 use ``relu1_1`` ... ``relu5_1``); here ``conv4_2`` is that ReLU output.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from core.backbones.vgg import VGG19_LAYERS

#: Every layer a user may pick, in network order.
LAYER_NAMES: tuple[str, ...] = tuple(n for n in VGG19_LAYERS if n.startswith("conv"))
#: Gatys et al.'s choice: the first conv of each block for style, conv4_2 for content.
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
DEFAULT_CONTENT_LAYER = "conv4_2"


def relu_index(layer: str) -> int:
    """``conv4_2`` -> index of its ReLU in ``vgg19().features`` (22)."""
    if layer not in LAYER_NAMES:
        raise ValueError(f"unknown VGG-19 layer {layer!r}; choose from {', '.join(LAYER_NAMES)}")
    return VGG19_LAYERS["relu" + layer[len("conv"):]]


class LayerActivations(nn.Module):
    """Runs VGG's ``features`` up to the deepest requested layer and returns the requested ReLU outputs.

    ``forward``: B x 3 x H x W (already normalised for the weights) -> {layer: B x C x h x w}.
    Stopping at the deepest layer in use skips conv5_2..conv5_4 and pool5 (a fifth of the
    work at conv5_1). The modules are shared with ``features``, not copied.
    """

    def __init__(self, features: nn.Sequential, layers: Iterable[str]):
        super().__init__()
        taps = {relu_index(name): name for name in layers}
        if not taps:
            raise ValueError("at least one layer is needed")
        self.body = nn.Sequential(*list(features.children())[: max(taps) + 1])
        # torchvision's ReLUs are in place; that is safe here: a ReLU output we return is
        # never changed in place by the next layer (always a conv or a pool).
        self.taps = taps

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for index, module in enumerate(self.body):
            x = module(x)
            if index in self.taps:
                out[self.taps[index]] = x
        return out


def timm_vgg_state(path) -> dict[str, torch.Tensor]:
    """timm's ``vgg19.tv_in1k`` safetensors -> the state of ``vgg19().features`` (conv part only).

    timm keeps torchvision's numbering under ``features.``; its classifier (``pre_logits``,
    ``head``) is dropped since style transfer never uses it.
    """
    from weights.registry import load_safetensors

    state = load_safetensors(path)
    return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
