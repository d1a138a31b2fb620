"""Fine-tuned tensors stored as their change from the pretrained weights they started from.

Why: fine-tuning VGG-19's block 5 (9.4 M weights) at a tenth of the head's learning rate moves each weight
by a small part of the weights' spread. A 4-bit palette (:mod:`weights.palette`) over the weights themselves
must cover their whole range and costs accuracy; over the change, the same 16 values per channel sit closer
together by about the ratio of the two spreads (FCN-8s's files: the README's table of storages). The
pretrained file is needed anyway (the frozen layers come from it), so the shipped file holds ``key + ".delta"``
for each such tensor, and loading adds the pretrained tensor back.
"""

from __future__ import annotations

import torch

SUFFIX = ".delta"


def as_deltas(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every float tensor that ``base`` also has replaced by ``key.delta`` = its change from base."""
    out = {}
    for key, value in state.items():
        if key in base and value.is_floating_point():
            if base[key].shape != value.shape:
                raise ValueError(f"{key}: {tuple(value.shape)} here, {tuple(base[key].shape)} in the base")
            out[key + SUFFIX] = value.float() - base[key].float()
        else:
            out[key] = value
    return out


def add_deltas(stored: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`as_deltas`: each ``key.delta`` becomes ``key`` = ``base[key]`` + delta."""
    out = {}
    for key, value in stored.items():
        if key.endswith(SUFFIX):
            key = key[: -len(SUFFIX)]
            if key not in base:
                raise KeyError(f"{key} is stored as a change from pretrained weights that do not have it")
            value = base[key].float() + value.float()
        out[key] = value
    return out
