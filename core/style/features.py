"""Which VGG-19 layers style transfer reads: the ReLU outputs of named conv layers.

The lecture names layers ``conv1_1`` ... ``conv5_4`` and means their ReLU outputs (Gatys
et al. 2016 use ``relu1_1`` ... ``relu5_1``); here ``conv4_2`` is that ReLU output, read as
the tap ``relu4_2`` of :class:`core.backbones.vgg.VGGEncoder`.
"""

from __future__ import annotations

from core.backbones.vgg import VGG19_LAYERS

#: Every layer a user may pick, in network order.
LAYER_NAMES: tuple[str, ...] = tuple(n for n in VGG19_LAYERS if n.startswith("conv"))
#: Gatys et al.'s choice: the first conv of each block for style, conv4_2 for content.
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
DEFAULT_CONTENT_LAYER = "conv4_2"


def relu_name(layer: str) -> str:
    """``conv4_2`` -> ``relu4_2``, the encoder tap that holds what the lecture calls conv4_2."""
    if layer not in LAYER_NAMES:
        raise ValueError(f"unknown VGG-19 layer {layer!r}; choose from {', '.join(LAYER_NAMES)}")
    return "relu" + layer[len("conv"):]


def relu_index(layer: str) -> int:
    """``conv4_2`` -> index of its ReLU in ``vgg19().features`` (22)."""
    return VGG19_LAYERS[relu_name(layer)]
