"""Inference for any image size: normalise, resize to the model's working scale, pad to stride, crop, upsample back."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.segmentation.padding import run_padded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(rgb01: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> ImageNet-standardised input."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    return (rgb01 - mean) / std


#: The test-time scales the panel offers and the README measures: a frame seen smaller and larger as well.
TEST_SCALES = (0.75, 1.0, 1.25)


@torch.no_grad()
def segment_logits(model, rgb01: torch.Tensor, *, normalize=imagenet_normalize, scale: float = 1.0,
                   flip: bool = False, scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> BxCxHxW logits at the input's size.

    ``scale`` resizes the input first (a model trained on 320x240 CamVid frames runs at 2/3
    of a 480x360 frame); the logits are upsampled bilinearly back to H x W. Test-time augmentation:
    ``flip`` averages the logits of the frame and of its mirror image (mirrored back), both run as
    one batch, about twice the network's time; ``scales`` averages the logits of the frame run at
    each of these multiples of ``scale`` (0.75, 1, 1.25: about three times the network's time).
    """
    h, w = rgb01.shape[-2:]
    total = None
    for s in scales:
        logits = _logits_at(model, rgb01, normalize, scale * s, flip)
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
        total = logits if total is None else total + logits
    return total / len(scales) if len(scales) > 1 else total


def _logits_at(model, rgb01: torch.Tensor, normalize, scale: float, flip: bool) -> torch.Tensor:
    """The network's logits for the frame resized by ``scale`` (at that size), with the mirror's mean if ``flip``."""
    x = rgb01
    if scale != 1.0:
        h, w = x.shape[-2:]
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    x = normalize(x)
    if not flip:
        return run_padded(model, x)
    both = run_padded(model, torch.cat([x, x.flip(-1)]))
    return (both[: len(x)] + both[len(x) :].flip(-1)) / 2


def segment(model, rgb01: torch.Tensor, **kwargs) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> BxHxW int64 class indices."""
    return segment_logits(model, rgb01, **kwargs).argmax(1)


def working_scale(input_size: tuple[int, int] | None, size: tuple[int, int]) -> float:
    """Scale that fits an HxW image into the (h, w) the model was trained at (1.0 when unknown).

    A 480x360 CamVid frame and a model trained at 320x240 give 2/3: objects then appear at
    the size the network learnt them.
    """
    if not input_size:
        return 1.0
    return min(input_size[0] / size[0], input_size[1] / size[1])


def logits_as_recorded(model, record, rgb01: torch.Tensor, *, flip: bool = False,
                       scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> BxCxHxW logits, with the record's normalisation and working scale (``flip``,
    ``scales``: see :func:`segment_logits`)."""
    scale = working_scale(record.input_size, tuple(rgb01.shape[-2:]))
    return segment_logits(model, rgb01, normalize=record.normalize, scale=scale, flip=flip, scales=scales)


def segment_as_recorded(model, record, rgb01: torch.Tensor, **kwargs) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> BxHxW class indices (see :func:`logits_as_recorded`)."""
    return logits_as_recorded(model, record, rgb01, **kwargs).argmax(1)
