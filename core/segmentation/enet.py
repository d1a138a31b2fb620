"""ENet (Paszke et al., 2016): a real-time encoder-decoder for semantic segmentation.

The paper's Table 1, layer for layer: an initial block (3x3 stride-2 conv concatenated with
a max pool), five stages of bottlenecks (regular, dilated, asymmetric 5x1+1x5, downsampling
with max-pool indices kept), a decoder that upsamples with ``max_unpool2d`` from those
indices, and a final transposed convolution. PReLU in the encoder, ReLU in the decoder,
spatial dropout (``Dropout2d``) 0.01 in stage 1 and 0.1 afterwards. Input: Bx3xHxW with H
and W multiples of 8 (:func:`core.segmentation.padding.pad_to_stride` takes care of that);
output: BxCxHxW logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _act(prelu: bool, channels: int) -> nn.Module:
    return nn.PReLU(channels) if prelu else nn.ReLU(inplace=True)


def _cbr(cin: int, cout: int, k, *, stride=1, padding=0, dilation=1, prelu=True) -> nn.Sequential:
    """conv (no bias: BN follows) -> BN -> activation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        _act(prelu, cout),
    )


class InitialBlock(nn.Module):
    """3 -> 16 channels at half resolution: 13 conv filters concatenated with the 3 pooled input channels."""

    def __init__(self, cin: int = 3, cout: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout - cin, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class RegularBottleneck(nn.Module):
    """Residual bottleneck: 1x1 reduce (x4) -> 3x3 | dilated 3x3 | 5x1+1x5 -> 1x1 expand -> spatial dropout."""

    def __init__(self, channels: int, *, kind: str = "regular", dilation: int = 1, dropout: float = 0.1, prelu=True):
        super().__init__()
        inner = channels // 4
        if kind == "asymmetric":
            # A 5x5 receptive field with 10 weights per channel pair instead of 25.
            middle = nn.Sequential(
                nn.Conv2d(inner, inner, (5, 1), padding=(2, 0), bias=False),
                nn.BatchNorm2d(inner),
                _act(prelu, inner),
                _cbr(inner, inner, (1, 5), padding=(0, 2), prelu=prelu),
            )
        else:
            middle = _cbr(inner, inner, 3, padding=dilation, dilation=dilation, prelu=prelu)
        self.branch = nn.Sequential(
            _cbr(channels, inner, 1, prelu=prelu),
            middle,
            _cbr(inner, channels, 1, prelu=prelu),
            nn.Dropout2d(dropout),
        )
        self.out_act = _act(prelu, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(x + self.branch(x))


class DownsamplingBottleneck(nn.Module):
    """Halves H and W; the main branch max-pools (keeping the indices for the decoder) and zero-pads channels."""

    def __init__(self, cin: int, cout: int, *, dropout: float = 0.1, prelu=True):
        super().__init__()
        inner = cin // 4
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.branch = nn.Sequential(
            _cbr(cin, inner, 2, stride=2, prelu=prelu),  # the paper's 2x2 stride-2 projection
            _cbr(inner, inner, 3, padding=1, prelu=prelu),
            _cbr(inner, cout, 1, prelu=prelu),
            nn.Dropout2d(dropout),
        )
        self.extra_channels = cout - cin
        self.out_act = _act(prelu, cout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        main, indices = self.pool(x)
        main = F.pad(main, (0, 0, 0, 0, 0, self.extra_channels))  # zero channels, as in the paper
        return self.out_act(main + self.branch(x)), indices


class UpsamplingBottleneck(nn.Module):
    """Doubles H and W; the main branch is a 1x1 conv then ``max_unpool2d`` with the encoder's indices."""

    def __init__(self, cin: int, cout: int, *, dropout: float = 0.1, prelu=False):
        super().__init__()
        inner = cin // 4
        self.main_conv = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.branch_in = _cbr(cin, inner, 1, prelu=prelu)
        self.branch_up = nn.Sequential(
            nn.ConvTranspose2d(inner, inner, 2, stride=2, bias=False), nn.BatchNorm2d(inner), _act(prelu, inner)
        )
        self.branch_out = nn.Sequential(_cbr(inner, cout, 1, prelu=prelu), nn.Dropout2d(dropout))
        self.out_act = _act(prelu, cout)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, output_size) -> torch.Tensor:
        main = F.max_unpool2d(self.main_conv(x), indices, kernel_size=2, stride=2, output_size=output_size)
        ext = self.branch_up(self.branch_in(x))
        # Odd encoder sizes: the transposed conv gives 2h x 2w, the unpooled map may be one larger.
        ext = F.pad(ext, (0, main.shape[-1] - ext.shape[-1], 0, main.shape[-2] - ext.shape[-2]))
        return self.out_act(main + self.branch_out(ext))


def _stage_body(channels: int, dropout: float) -> nn.Sequential:
    """Stages 2 and 3 of Table 1 (after the downsampling): 8 bottlenecks mixing dilation and asymmetry."""
    layout = [("regular", 1), ("dilated", 2), ("asymmetric", 1), ("dilated", 4),
              ("regular", 1), ("dilated", 8), ("asymmetric", 1), ("dilated", 16)]
    return nn.Sequential(*[RegularBottleneck(channels, kind=k, dilation=d, dropout=dropout) for k, d in layout])


class ENet(nn.Module):
    """ENet for ``num_classes`` classes; forward: Bx3xHxW (H, W multiples of 8) -> BxCxHxW logits."""

    stride = 8

    def __init__(self, num_classes: int = 11):
        super().__init__()
        self.initial = InitialBlock(3, 16)
        self.down1 = DownsamplingBottleneck(16, 64, dropout=0.01)
        self.stage1 = nn.Sequential(*[RegularBottleneck(64, dropout=0.01) for _ in range(4)])
        self.down2 = DownsamplingBottleneck(64, 128, dropout=0.1)
        self.stage2 = _stage_body(128, 0.1)
        self.stage3 = _stage_body(128, 0.1)
        self.up4 = UpsamplingBottleneck(128, 64, dropout=0.1)
        self.stage4 = nn.Sequential(*[RegularBottleneck(64, dropout=0.1, prelu=False) for _ in range(2)])
        self.up5 = UpsamplingBottleneck(64, 16, dropout=0.1)
        self.stage5 = RegularBottleneck(16, dropout=0.1, prelu=False)
        self.fullconv = nn.ConvTranspose2d(16, num_classes, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_in = x.shape[-2:]
        x1 = self.initial(x)
        x, idx1 = self.down1(x1)
        x = self.stage1(x)
        size2 = x.shape[-2:]
        x, idx2 = self.down2(x)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, idx2, size2))
        x = self.stage5(self.up5(x, idx1, x1.shape[-2:]))
        x = self.fullconv(x)
        return x[..., : size_in[0], : size_in[1]]


def enet(num_classes: int = 11) -> ENet:
    """The registry's builder (no weights; the registry loads them)."""
    return ENet(num_classes)
