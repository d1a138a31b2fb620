"""Label maps made visible: class colours, a blend over the photo, and the share of pixels per class."""

from __future__ import annotations

import torch


def colorize(labels: torch.Tensor, colors) -> torch.Tensor:
    """BxHxW int class indices -> Bx3xHxW float RGB in [0, 1] from a palette of (r, g, b) 0..255 triples."""
    palette = torch.tensor(colors, dtype=torch.float32, device=labels.device) / 255
    return palette[labels.long()].permute(0, 3, 1, 2)


def overlay(rgb01: torch.Tensor, labels: torch.Tensor, colors, opacity: float) -> torch.Tensor:
    """Bx3xHxW photo + BxHxW labels -> Bx3xHxW ``(1 - opacity) * photo + opacity * colours``.

    opacity 0 shows the photo, 1 the label colours alone.
    """
    opacity = float(min(max(opacity, 0.0), 1.0))
    return (1 - opacity) * rgb01 + opacity * colorize(labels, colors).to(rgb01.dtype)


def class_shares(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """BxHxW int class indices -> BxC fraction of each image's pixels per class (rows sum to 1)."""
    flat = labels.reshape(labels.shape[0], -1).long()
    counts = torch.zeros(labels.shape[0], num_classes, dtype=torch.float64, device=labels.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    return (counts / flat.shape[1]).float()
