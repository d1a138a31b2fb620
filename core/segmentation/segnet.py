"""SegNet (Badrinarayanan et al., 2017): VGG-16's 13 convs with BN, and a decoder that unpools.

The encoder max-pools with ``return_indices=True``; each decoder stage calls
``F.max_unpool2d`` with the indices of the mirrored encoder stage, which puts every value
back at the position its maximum came from (zeros elsewhere), and then densifies the sparse
map with trainable convs. That is SegNet's whole idea: boundaries come back from the
indices, not from interpolation, and the decoder stores no encoder feature maps.

Input: Bx3xHxW (H, W multiples of 32; :func:`core.segmentation.padding.run_padded` pads);
output: BxCxHxW logits (softmax is applied by the loss / the argmax at inference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.segmentation.frozen_vgg19 import vgg19_taps
from core.segmentation.vgg16 import VGG16_BLOCKS, conv_block, vgg16_blocks


class SegNetDecoder(nn.Module):
    """Five stages mirroring VGG-16's blocks, each: unpool with the mirrored block's indices, then convs (+BN).

    Stage k undoes block 5-k; its last conv maps to the channels of the shallower block it
    hands over to (512, 256, 128, 64, 64). A final 3x3 conv gives the class scores.
    """

    def __init__(self, num_classes: int = 11):
        super().__init__()
        hand_over = [64] + [widths[-1] for widths in VGG16_BLOCKS[:-1]]
        self.stages = nn.ModuleList(
            conv_block(VGG16_BLOCKS[b][-1], (*VGG16_BLOCKS[b][:-1], hand_over[b]), batch_norm=True)
            for b in reversed(range(len(VGG16_BLOCKS)))
        )
        self.classifier = nn.Conv2d(64, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor, pools: list[tuple[torch.Tensor, torch.Size]]) -> torch.Tensor:
        """x: the deepest pooled map (stride 32); pools: (indices, size before pooling) per block, shallow first."""
        for stage, (idx, size) in zip(self.stages, reversed(pools)):
            x = stage(F.max_unpool2d(x, idx, kernel_size=2, stride=2, output_size=size))
        return self.classifier(x)


def pool_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Size]]:
    """2x2 max-pool keeping what the decoder needs to undo it: (pooled, (indices, size before pooling))."""
    pooled, idx = F.max_pool2d(x, 2, stride=2, return_indices=True)
    return pooled, (idx, x.shape[-2:])


class SegNet(nn.Module):
    """VGG-16 encoder with BN (trained end to end) + :class:`SegNetDecoder`."""

    stride = 32

    def __init__(self, num_classes: int = 11):
        super().__init__()
        self.encoder = vgg16_blocks(batch_norm=True)
        self.decoder = SegNetDecoder(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = []
        for block in self.encoder:
            x, pool = pool_with_indices(block(x))
            pools.append(pool)
        return self.decoder(x, pools)


class SegNetVGG19(nn.Module):
    """:class:`SegNetDecoder` on the frozen ImageNet VGG-19 taps: pools each relu tap with indices, then decodes.

    The encoder is VGG-19, not the paper's VGG-16, because VGG-19's ImageNet weights are the
    ones at hand; the decoder is the paper's (13 convs, mirroring VGG-16). Only the decoder
    trains and ships. Input: Caffe-normalised BGR, H, W multiples of 32.
    """

    stride = 32

    def __init__(self, num_classes: int = 11):
        super().__init__()
        self.encoder = vgg19_taps()
        self.decoder = SegNetDecoder(num_classes)

    def decode(self, taps: list[torch.Tensor]) -> torch.Tensor:
        pools = []
        for tap in taps:
            x, pool = pool_with_indices(tap)
            pools.append(pool)
        return self.decoder(x, pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))


def segnet_vgg19_frozen(num_classes: int = 11) -> SegNetVGG19:
    """The registry's builder; :func:`core.segmentation.frozen_vgg19.load_frozen_vgg19_state` adds the encoder."""
    return SegNetVGG19(num_classes)
