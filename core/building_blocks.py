"""The decoder's building blocks on numbers small enough to check by hand.

Max pooling that remembers where each maximum was, max unpooling that puts values back
there (SegNet's decoder), nearest-neighbour and "bed of nails" unpooling, strided
convolution (downsampling) and transpose convolution (learnable upsampling, overlapping
outputs summed). Every function runs the real PyTorch op on a 2-D grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _as_batch(grid) -> torch.Tensor:
    """A HxW grid (list or tensor) as a 1x1xHxW float tensor."""
    t = torch.as_tensor(grid, dtype=torch.float32)
    if t.dim() != 2:
        raise ValueError(f"expected a 2-D grid, got shape {tuple(t.shape)}")
    return t[None, None]


def max_pool_with_indices(grid, kernel: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """HxW -> (H/k x W/k maxima, their flat positions in the input) — what SegNet's encoder stores."""
    values, indices = F.max_pool2d(_as_batch(grid), kernel, stride=kernel, return_indices=True)
    return values[0, 0], indices[0, 0]


def max_unpool(values, indices, output_size: tuple[int, int], kernel: int = 2) -> torch.Tensor:
    """Put each value back at the position its max came from; every other cell is 0."""
    out = F.max_unpool2d(_as_batch(values), torch.as_tensor(indices)[None, None], kernel, output_size=output_size)
    return out[0, 0]


def nearest_unpool(grid, scale: int = 2) -> torch.Tensor:
    """Copy each value into a scale x scale block."""
    return F.interpolate(_as_batch(grid), scale_factor=scale, mode="nearest")[0, 0]


def bed_of_nails_unpool(grid, scale: int = 2) -> torch.Tensor:
    """Each value at the top-left of its scale x scale block, zeros elsewhere."""
    x = _as_batch(grid)
    out = x.new_zeros(1, 1, x.shape[-2] * scale, x.shape[-1] * scale)
    out[..., ::scale, ::scale] = x
    return out[0, 0]


def conv_output_size(n: int, kernel: int, stride: int, padding: int) -> int:
    """Convolution output length: floor((n + 2p - k) / s) + 1."""
    return (n + 2 * padding - kernel) // stride + 1


def transpose_conv_output_size(n: int, kernel: int, stride: int, padding: int, output_padding: int = 0) -> int:
    """Transpose convolution output length: (n - 1) s - 2p + k + output_padding."""
    return (n - 1) * stride - 2 * padding + kernel + output_padding


def convolve(grid, kernel, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """2-D cross-correlation (what deep learning calls convolution) of one grid with one filter."""
    return F.conv2d(_as_batch(grid), _as_batch(kernel), stride=stride, padding=padding)[0, 0]


def transpose_convolve(grid, kernel, stride: int = 2, padding: int = 1) -> torch.Tensor:
    """Each input cell paints ``value * filter`` onto the output; where paintings overlap they add up."""
    return F.conv_transpose2d(_as_batch(grid), _as_batch(kernel), stride=stride, padding=padding)[0, 0]


def transpose_conv_contributions(
    input_shape: tuple[int, int], kernel_shape: tuple[int, int], stride: int = 2, padding: int = 1
) -> dict[tuple[int, int], list[tuple[tuple[int, int], tuple[int, int]]]]:
    """For every output cell, the (input cell, filter cell) pairs summed into it.

    Found with the real op: one-hot input times one-hot filter lights exactly the output
    cell that pair writes to (or none, when padding crops it away).
    """
    h, w = input_shape
    kh, kw = kernel_shape
    contributions: dict[tuple[int, int], list] = {}
    for i in range(h):
        for j in range(w):
            x = torch.zeros(h, w)
            x[i, j] = 1
            for a in range(kh):
                for b in range(kw):
                    k = torch.zeros(kh, kw)
                    k[a, b] = 1
                    out = transpose_convolve(x, k, stride, padding)
                    for y, z in torch.nonzero(out).tolist():
                        contributions.setdefault((y, z), []).append(((i, j), (a, b)))
    return contributions


def transpose_conv_1d_formula(inputs: list[str], filters: list[str], stride: int = 2, padding: int = 0) -> list[str]:
    """The 1-D transpose convolution written out with letters, e.g. [a, b] * [x, y, z] -> [ax, ay, az+bx, by, bz]."""
    n, k = len(inputs), len(filters)
    length = transpose_conv_output_size(n, k, stride, padding)
    terms: list[list[str]] = [[] for _ in range(length)]
    for i in range(n):
        for j in range(k):
            x = torch.zeros(1, 1, n)
            x[0, 0, i] = 1
            f = torch.zeros(1, 1, k)
            f[0, 0, j] = 1
            out = F.conv_transpose1d(x, f, stride=stride, padding=padding)[0, 0]
            for (pos,) in torch.nonzero(out).tolist():
                terms[pos].append(inputs[i] + filters[j])
    return ["+".join(t) if t else "0" for t in terms]
