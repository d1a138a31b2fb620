"""U-Net (Ronneberger et al., 2015) on any encoder with taps: upsample, concatenate the skip, convolve.

The encoder returns one feature map per stride and ``feature_info`` says their channels and
strides: the project's :class:`core.backbones.vgg.VGGEncoder`, or any timm ``features_only``
model. Each :class:`DecoderBlock` doubles the resolution, concatenates the encoder map of that
stride (the skip connection that gives U-Net its sharp boundaries) and applies two 3x3
conv-BN-ReLU. Like segmentation_models.pytorch, encoder and decoder are separate, swappable parts.

Input Bx3xHxW (H, W multiples of the encoder's deepest stride), output BxCxHxW logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.segmentation.blocks import conv_block
from core.segmentation.frozen_vgg19 import frozen_vgg19


class DecoderBlock(nn.Module):
    """(B, cin, h, w) + skip (B, cskip, 2h, 2w) -> (B, cout, 2h, 2w)."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.convs = conv_block(cin + cskip, (cout, cout), batch_norm=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UNet(nn.Module):
    """Encoder: taps described by ``feature_info`` (VGGEncoder, timm ``features_only``); decoder: one block per
    encoder level up to stride 1."""

    def __init__(self, encoder: nn.Module, num_classes: int = 11, decoder_channels=(256, 128, 64, 32, 16)):
        super().__init__()
        self.encoder = encoder
        channels = encoder.feature_info.channels()
        reductions = encoder.feature_info.reduction()
        self.stride = reductions[-1]
        # Skips are all levels but the deepest, deepest first; a stride-1 level is used as a skip too.
        skips = list(reversed(channels[:-1]))
        n_up = len(reductions) - 1 + (0 if reductions[0] == 1 else 1)
        widths = list(decoder_channels[:n_up])
        blocks, cin = [], channels[-1]
        for i, cout in enumerate(widths):
            cskip = skips[i] if i < len(skips) else 0
            blocks.append(DecoderBlock(cin, cskip, cout))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 3, padding=1)

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Encoder maps (shallow to deep) -> logits: everything but the encoder."""
        y, skips = features[-1], list(reversed(features[:-1]))
        for i, block in enumerate(self.decoder):
            y = block(y, skips[i] if i < len(skips) else None)
        return self.head(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))


def unet_vgg19_frozen(num_classes: int = 11) -> UNet:
    """The registry's builder, U-Net on the frozen VGG-19's block-end taps (strides 1..16): only the decoder trains
    and ships; :func:`core.segmentation.frozen_vgg19.load_frozen_vgg19_state` adds the encoder's weights."""
    return UNet(frozen_vgg19(), num_classes)
