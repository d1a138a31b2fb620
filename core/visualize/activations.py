"""An image's activation maps at one layer: as a grid of channels and as a heat-map overlay."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.visualize.filters import tile
from core.visualize.layers import layer_output

# A perceptually ordered dark-to-bright colour map (anchor colours of matplotlib's "inferno",
# interpolated linearly), so no plotting library is needed.
_INFERNO = torch.tensor([
    [0.001, 0.000, 0.014], [0.258, 0.039, 0.406], [0.576, 0.148, 0.404],
    [0.865, 0.317, 0.226], [0.988, 0.645, 0.040], [0.988, 1.000, 0.645],
])


def colormap(values: torch.Tensor) -> torch.Tensor:
    """...xHxW values in [0, 1] -> ...x3xHxW RGB along the inferno ramp (0 dark, 1 bright yellow)."""
    v = values.clamp(0, 1) * (len(_INFERNO) - 1)
    lo = v.floor().long().clamp(max=len(_INFERNO) - 2)
    t = (v - lo).unsqueeze(-1)
    lut = _INFERNO.to(values.device)
    rgb = lut[lo] * (1 - t) + lut[lo + 1] * t
    return rgb.movedim(-1, -3)


def activations(model: nn.Module, layer_path: str, x: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW normalised input -> BxCxhxw activations at ``layer_path`` (no gradients)."""
    with torch.no_grad():
        return layer_output(model, layer_path, x)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """CxHxW -> [0, 1], each channel divided by its own maximum (negatives clipped to 0).

    Per channel so weak but structured channels are readable; an all-zero channel stays black.
    """
    top = maps.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (maps.clamp_min(0) / top).clamp(0, 1)


def strongest_channels(maps: torch.Tensor, k: int) -> list[int]:
    """CxHxW -> the ``k`` channels with the largest mean activation, strongest first."""
    k = min(k, maps.shape[0])
    return maps.flatten(1).mean(1).topk(k).indices.tolist()


def channel_grid(maps: torch.Tensor, channels: list[int], ncols: int | None = None) -> torch.Tensor:
    """CxHxW activations -> 3xH'xW' grid of the chosen channels, coloured, each normalised."""
    chosen = normalize_maps(maps[channels])
    return tile(colormap(chosen), ncols=ncols, pad=2)


def overlay(image: torch.Tensor, act: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """3xHxW image in [0, 1] and one hxw map -> 3xHxW blend of the image and the coloured map.

    The map is upsampled bilinearly to the image size; ``alpha`` weighs the map where it is
    strongest, so silent regions show the image.
    """
    a = act.float()[None, None]
    a = F.interpolate(a, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    a = normalize_maps(a[None])[0]
    weight = alpha * a
    return (image * (1 - weight) + colormap(a) * weight).clamp(0, 1)
