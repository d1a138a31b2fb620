"""RoI Pool vs RoI Align: where each one reads the feature map, and what it pools.

Both turn a box in image pixels into a fixed ``out x out`` grid of features. RoI Pool
(Fast R-CNN) rounds the box to whole feature cells and each bin to whole cells, then takes
the max; RoI Align (Mask R-CNN) keeps the box exact and averages bilinear samples at
evenly spaced points in each bin. The geometry functions below follow torchvision's kernels
(``torchvision/csrc/ops/cpu/roi_{pool,align}_kernel.cpp``) step by step, so what the panel
draws is what :func:`torchvision.ops.roi_pool` and :func:`torchvision.ops.roi_align` compute;
the tests check exactly that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align, roi_pool


@dataclass(frozen=True)
class PoolBins:
    """RoI Pool's bins in feature cells: ``cells[i][j] = (y0, y1, x0, x1)``, half-open, clipped to the map."""

    box_cells: tuple[int, int, int, int]  # the rounded box (x1, y1, x2, y2), inclusive cell indices
    cells: list[list[tuple[int, int, int, int]]]


@dataclass(frozen=True)
class AlignSamples:
    """RoI Align's bins and sample points in feature coordinates (cell centres at integers).

    ``edges_y``/``edges_x``: the ``out + 1`` bin edges; ``points``: ``(out, out, n, 2)`` tensor of
    (y, x) sample positions, ``n`` points per bin whose bilinear values are averaged.
    """

    box: tuple[float, float, float, float]  # exact box (x1, y1, x2, y2) in feature coordinates
    edges_y: list[float]
    edges_x: list[float]
    points: torch.Tensor


def pool_bins(box, *, spatial_scale: float, out: int, feature_size: tuple[int, int]) -> PoolBins:
    """The cells RoI Pool takes the max over, for a box ``(x1, y1, x2, y2)`` in image pixels.

    The box is rounded to cells (``round(x * scale)``, half away from zero as C's ``round``),
    made at least one cell, split into ``out`` bins of ``size / out`` cells each, and every bin
    widened to whole cells (``floor`` of its start, ``ceil`` of its end): the two quantisations
    the lecture blames for masks that are off by a few pixels.
    """
    height, width = feature_size
    x1, y1, x2, y2 = (_c_round(v * spatial_scale) for v in box)
    bin_h = max(y2 - y1 + 1, 1) / out
    bin_w = max(x2 - x1 + 1, 1) / out

    def span(i: int, size: float, start: int, limit: int) -> tuple[int, int]:
        lo = min(max(math.floor(i * size) + start, 0), limit)
        hi = min(max(math.ceil((i + 1) * size) + start, 0), limit)
        return lo, hi

    cells = [
        [(*span(i, bin_h, y1, height), *span(j, bin_w, x1, width)) for j in range(out)] for i in range(out)
    ]
    return PoolBins(box_cells=(x1, y1, x2, y2), cells=cells)


def align_samples(box, *, spatial_scale: float, out: int, sampling_ratio: int = 2) -> AlignSamples:
    """Where RoI Align (``aligned=True``) samples, for a box ``(x1, y1, x2, y2)`` in image pixels.

    ``aligned=True`` shifts by half a cell so that pixel ``x`` maps to feature coordinate
    ``x * scale - 0.5`` (cell centres at integers); nothing is rounded. Each of the
    ``out x out`` bins gets ``sampling_ratio x sampling_ratio`` points at the centres of an even
    sub-grid (``sampling_ratio <= 0``: ``ceil(bin size)`` points per side, as torchvision).
    """
    x1, y1, x2, y2 = (v * spatial_scale - 0.5 for v in box)
    bin_h, bin_w = (y2 - y1) / out, (x2 - x1) / out
    grid_h = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_h), 1)
    grid_w = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_w), 1)
    i = torch.arange(out, dtype=torch.float64)
    ys = y1 + i[:, None] * bin_h + (torch.arange(grid_h, dtype=torch.float64) + 0.5) * bin_h / grid_h  # (out, gh)
    xs = x1 + i[:, None] * bin_w + (torch.arange(grid_w, dtype=torch.float64) + 0.5) * bin_w / grid_w  # (out, gw)
    py = ys[:, None, :, None].expand(out, out, grid_h, grid_w)
    px = xs[None, :, None, :].expand(out, out, grid_h, grid_w)
    points = torch.stack([py, px], dim=-1).reshape(out, out, grid_h * grid_w, 2)
    return AlignSamples(
        box=(x1, y1, x2, y2),
        edges_y=[y1 + k * bin_h for k in range(out + 1)],
        edges_x=[x1 + k * bin_w for k in range(out + 1)],
        points=points,
    )


def pool_both(features: torch.Tensor, boxes: torch.Tensor, *, spatial_scale: float, out: int = 7,
              sampling_ratio: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI Pool and RoI Align of ``boxes`` ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)`` in image pixels.

    ``features``: ``(N, C, H, W)`` at ``spatial_scale`` (1/stride). Returns two ``(K, C, out, out)`` tensors.
    """
    features, boxes = features.float(), boxes.to(features.device, torch.float32)
    pooled = roi_pool(features, boxes, output_size=out, spatial_scale=spatial_scale)
    aligned = roi_align(features, boxes, output_size=out, spatial_scale=spatial_scale,
                        sampling_ratio=sampling_ratio, aligned=True)
    return pooled, aligned


def bilinear(feature: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``feature`` ``(C, H, W)`` at ``points`` ``(..., 2)`` as (y, x); ``(..., C)``.

    Border rule of RoI Align: a point more than one cell outside the map reads 0; one inside
    that margin is clamped to the edge.
    """
    _, height, width = feature.shape
    y, x = points[..., 0], points[..., 1]
    outside = (y < -1) | (y > height) | (x < -1) | (x > width)
    y, x = y.clamp(0, height - 1), x.clamp(0, width - 1)
    y0, x0 = y.floor().long().clamp(max=height - 1), x.floor().long().clamp(max=width - 1)
    y1, x1 = (y0 + 1).clamp(max=height - 1), (x0 + 1).clamp(max=width - 1)
    ly, lx = (y - y0).unsqueeze(-1), (x - x0).unsqueeze(-1)
    f = feature.permute(1, 2, 0).double()
    value = (f[y0, x0] * (1 - ly) * (1 - lx) + f[y0, x1] * (1 - ly) * lx
             + f[y1, x0] * ly * (1 - lx) + f[y1, x1] * ly * lx)
    return value.masked_fill(outside.unsqueeze(-1), 0.0)


def _c_round(v: float) -> int:
    """C's ``round``: halves go away from zero (Python's ``round`` goes to even)."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)
