"""The conv block that SegNet's and U-Net's decoders are made of."""

from __future__ import annotations

from torch import nn


def conv_block(cin: int, widths: tuple[int, ...], *, batch_norm: bool) -> nn.Sequential:
    """3x3 same-padded convs (+BN) + ReLU, one per entry of ``widths`` (output channels); keeps H x W."""
    layers: list[nn.Module] = []
    for cout in widths:
        layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        cin = cout
    return nn.Sequential(*layers)
