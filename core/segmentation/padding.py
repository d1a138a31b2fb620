"""Any input size for a network with output stride ``s``: pad to a multiple of ``s``, crop back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_size(h: int, w: int, stride: int) -> tuple[int, int]:
    """(H', W'): H and W rounded up to multiples of ``stride``, the size :func:`pad_to_stride` pads to."""
    return h + (-h) % stride, w + (-w) % stride


def pad_to_stride(x: torch.Tensor, stride: int, *, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """BxCxHxW -> (BxCxH'xW', (H, W)) with H', W' the next multiples of ``stride`` (padding right/bottom).

    Reflection keeps the statistics at the border natural; inputs smaller than the pad fall back to replicate.
    """
    h, w = x.shape[-2:]
    padded_h, padded_w = padded_size(h, w, stride)
    ph, pw = padded_h - h, padded_w - w
    if ph or pw:
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_stride` on the output: keep the top-left HxW."""
    return y[..., : size[0], : size[1]]


def run_padded(model: torch.nn.Module, x: torch.Tensor, stride: int | None = None) -> torch.Tensor:
    """``model(x)`` for any H and W: pad to the model's stride (``model.stride`` by default), crop the logits back."""
    stride = stride or getattr(model, "stride", 32)
    padded, size = pad_to_stride(x, stride)
    return crop_to(model(padded), size)
