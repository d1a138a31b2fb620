"""Layer-1 kernels as colour pictures: what the first layer of a network looks for."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalize_per_filter(weight: torch.Tensor) -> torch.Tensor:
    """OxCxkxk kernels -> same shape in [0, 1], each filter stretched by its own min and max.

    Per filter, not over the whole layer, so weak filters stay visible. A constant filter
    becomes mid-grey (0.5).
    """
    w = weight.detach().float()
    flat = w.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1, 1)
    span = hi - lo
    return torch.where(span > 0, (w - lo) / span.clamp_min(1e-12), torch.full_like(w, 0.5))


def tile(images: torch.Tensor, ncols: int | None = None, pad: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """NxCxhxw -> Cx(rows*(h+pad)+pad)x(cols*(w+pad)+pad), images left to right, top to bottom."""
    n, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = images.new_full((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), pad_value)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top:top + h, left:left + w] = images[i]
    return canvas


def filter_grid(weight: torch.Tensor, *, color_order: str = "RGB", scale: int = 8,
                ncols: int | None = None) -> torch.Tensor:
    """First-layer kernels Ox3xkxk -> one 3xHxW RGB grid in [0, 1], each kernel ``scale`` x enlarged.

    ``color_order="BGR"`` (Caffe models) flips the input channels so red shows as red.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected Ox3xkxk first-layer kernels, got {tuple(weight.shape)}")
    w = normalize_per_filter(weight)
    if color_order == "BGR":
        w = w.flip(1)
    w = F.interpolate(w, scale_factor=scale, mode="nearest")  # nearest: each weight a visible square
    return tile(w, ncols=ncols, pad=2)
