"""Pictures of style matrices: Gram heat-maps of the style image beside the generated image's.

A student sees what "style" means: which channels fire together. Both maps of a pair share
one colour scale, so "the same colours" means "the same statistics".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: A perceptually ordered dark-blue -> teal -> yellow ramp (anchor points of viridis).
_RAMP = torch.tensor([
    [0.267, 0.005, 0.329], [0.230, 0.322, 0.546], [0.128, 0.567, 0.551], [0.369, 0.789, 0.383], [0.993, 0.906, 0.144],
])


def colorize(values: torch.Tensor) -> torch.Tensor:
    """H x W values in [0, 1] -> 3 x H x W RGB in [0, 1] along the ramp (linear between anchors)."""
    v = values.clamp(0, 1) * (len(_RAMP) - 1)
    low = v.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (v - low).unsqueeze(-1)
    rgb = _RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac
    return rgb.permute(2, 0, 1)


def gram_pair(
    gram_style: torch.Tensor, gram_generated: torch.Tensor, channels: int = 64, size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two C x C Grams -> two 3 x size x size heat-maps on one shared scale.

    Only the first ``channels`` channels are shown (a 512 x 512 matrix is a grey blur at
    screen size). Values are shown as log(1 + G / s) / log(1 + max / s), with s the median:
    Grams of ReLU outputs are non-negative and span several orders of magnitude.
    """
    s, g = gram_style[:channels, :channels].float(), gram_generated[:channels, :channels].float()
    both = torch.stack([s, g]).clamp(min=0)
    scale = both.median().clamp(min=1e-12)
    logged = torch.log1p(both / scale)
    logged = logged / logged.max().clamp(min=1e-12)
    up = F.interpolate(logged.unsqueeze(1), size=(size, size), mode="nearest").squeeze(1)
    return colorize(up[0]), colorize(up[1])
