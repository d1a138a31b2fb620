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


@torch.no_grad()
def segment_logits(model, rgb01: torch.Tensor, *, normalize=imagenet_normalize, scale: float = 1.0,
                   flip: bool = False) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> BxCxHxW logits at the input's size.

    ``scale`` resizes the input first (a model trained on 320x240 CamVid frames runs at 2/3
    of a 480x360 frame); the logits are upsampled bilinearly back to H x W. ``flip``: test-time
    augmentation, the mean of the logits of the frame and of its mirror image (mirrored back); both run
    as one batch, so it costs about twice the network's time.
    """
    h, w = rgb01.shape[-2:]
    x = rgb01
    if scale != 1.0:
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    x = normalize(x)
    if flip:
        both = run_padded(model, torch.cat([x, x.flip(-1)]))
        logits = (both[: len(x)] + both[len(x) :].flip(-1)) / 2
    else:
        logits = run_padded(model, x)
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
    return logits


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


def segment_as_recorded(model, record, rgb01: torch.Tensor, *, flip: bool = False) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> BxHxW class indices, with the record's normalisation and working scale (``flip``:
    see :func:`segment_logits`)."""
    scale = working_scale(record.input_size, tuple(rgb01.shape[-2:]))
    return segment(model, rgb01, normalize=record.normalize, scale=scale, flip=flip)
