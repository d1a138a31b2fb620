"""VGG-19's convolutional part (torchvision layout), with the lecture's layer names.

``features[i]`` follows torchvision's ``vgg19().features``; :data:`VGG19_LAYERS` maps the
names used in papers and in the lecture (``conv1_1``, ``relu4_2``, ``pool5``) to indices.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

_BLOCKS = (2, 2, 4, 4, 4)  # convs per block in VGG-19


def _layer_names() -> dict[str, int]:
    names, i = {}, 0
    for block, n_convs in enumerate(_BLOCKS, start=1):
        for conv in range(1, n_convs + 1):
            names[f"conv{block}_{conv}"] = i
            names[f"relu{block}_{conv}"] = i + 1
            i += 2
        names[f"pool{block}"] = i
        i += 1
    return names


#: name -> index into ``features``; e.g. ``conv4_2`` -> 21, ``relu4_2`` -> 22.
VGG19_LAYERS: dict[str, int] = _layer_names()


def vgg19_features() -> nn.Sequential:
    """VGG-19's 16 conv layers with ReLU and max pooling; no weights (the registry loads them).

    torchvision's own layer builder, without its 120M-parameter classifier (8x faster to build).
    """
    return make_layers(cfgs["E"])


def load_q8_state(path) -> dict[str, torch.Tensor]:
    """Read the 8-bit form (``{i}.weight_q`` uint8 + ``{i}.weight_table``): weight = table[q]."""
    from safetensors.torch import load_file

    raw = load_file(str(path))
    state = {}
    for key, value in raw.items():
        if key.endswith(".weight_q"):
            prefix = key[: -len(".weight_q")]
            state[f"{prefix}.weight"] = raw[f"{prefix}.weight_table"].float()[value.long()]
        elif key.endswith(".bias"):
            state[key] = value.float()
    return state


def features_up_to(features: nn.Sequential, layer: str) -> nn.Sequential:
    """The first layers of ``features`` up to and including ``layer`` (e.g. ``relu5_1``, stride 16); shares weights."""
    return features[: VGG19_LAYERS[layer] + 1]
