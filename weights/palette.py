"""Palettised weight files: each output channel's weights stored as 4- or 8-bit indices into its own 2^bits values.

Why: a decoder like SegNet's (13 VGG-sized convs, 14.7 M weights) is 29 MB in fp16, more than the
whole repository may hold. Per output channel, 1-D k-means (Lloyd's algorithm, quantile start)
picks 16 or 256 values; each weight keeps the index of the nearest. 4 bits cut fp16 by 4x. The
release scores the file that ships, so the model card says what the palette costs.

Layout in the safetensors file, for a palettised tensor ``k`` of shape (C, ...):
``k.codes`` uint8 (two 4-bit indices per byte, low nibble first, when 16 values),
``k.palette`` fp16 (C, 2^bits), ``k.shape`` int64. Every other tensor is stored as it is given.
"""

from __future__ import annotations

import torch

#: Tensors smaller than this (biases, BN, small heads) stay as they are: no saving worth an error.
MIN_NUMEL = 4096


def kmeans_rows(w: torch.Tensor, k: int, iters: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, N) -> (codes int64 (C, N), centroids (C, k) sorted): 1-D k-means per row, in float64.

    In 1-D, the nearest centroid is found by bucketing at the midpoints of sorted centroids.
    """
    w = w.double()
    rows = torch.arange(w.shape[0])[:, None]
    centroids = torch.quantile(w, torch.linspace(0, 1, k, dtype=torch.float64), dim=1).T.contiguous()
    for _ in range(iters):
        codes = torch.searchsorted(((centroids[:, 1:] + centroids[:, :-1]) / 2).contiguous(), w.contiguous())
        flat = (rows * k + codes).flatten()
        sums = torch.zeros(w.shape[0] * k, dtype=torch.float64).index_add_(0, flat, w.flatten())
        ones = torch.ones_like(flat, dtype=torch.float64)
        counts = torch.zeros(w.shape[0] * k, dtype=torch.float64).index_add_(0, flat, ones)
        # An empty cluster keeps its old value.
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids.flatten()).view_as(centroids)
        centroids = centroids.sort(dim=1).values
    codes = torch.searchsorted(((centroids[:, 1:] + centroids[:, :-1]) / 2).contiguous(), w.contiguous())
    return codes, centroids


def _pack4(codes: torch.Tensor) -> torch.Tensor:
    flat = codes.flatten().to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return flat[0::2] | (flat[1::2] << 4)


def _unpack4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    return torch.stack([packed & 0x0F, packed >> 4], dim=1).flatten()[:numel]


def palettize(state: dict[str, torch.Tensor], bits: int = 4) -> dict[str, torch.Tensor]:
    """A state dict -> the tensors of a palettised file (weights of >= :data:`MIN_NUMEL` elements palettised)."""
    if bits not in (4, 8):
        raise ValueError("palettes have 16 (4-bit) or 256 (8-bit) values")
    out = {}
    for key, value in state.items():
        if not value.is_floating_point() or value.dim() < 2 or value.numel() < MIN_NUMEL:
            out[key] = value.contiguous()
            continue
        codes, centroids = kmeans_rows(value.float().flatten(1), 2 ** bits)
        out[f"{key}.codes"] = _pack4(codes) if bits == 4 else codes.to(torch.uint8).flatten()
        out[f"{key}.palette"] = centroids.half().contiguous()
        out[f"{key}.shape"] = torch.tensor(value.shape, dtype=torch.int64)
    return out


def is_palettized(raw: dict[str, torch.Tensor]) -> bool:
    return any(key.endswith(".palette") for key in raw)


def depalettize(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a palettised file -> a plain state dict (palettised weights in fp32)."""
    state = {}
    for key, value in raw.items():
        if key.endswith((".codes", ".shape")):
            continue
        if not key.endswith(".palette"):
            state[key] = value
            continue
        name = key[: -len(".palette")]
        shape = torch.Size(raw[f"{name}.shape"].tolist())
        rows, numel = shape[0], shape.numel()
        codes = raw[f"{name}.codes"]
        codes = _unpack4(codes, numel) if value.shape[1] == 16 else codes
        codes = codes.long().view(rows, -1)
        state[name] = value.float().gather(1, codes).view(shape)
    return state
