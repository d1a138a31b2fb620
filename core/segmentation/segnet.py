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

from core.segmentation.vgg16 import VGG16_BLOCKS, conv_block, vgg16_blocks


class SegNet(nn.Module):
    stride = 32

    def __init__(self, num_classes: int = 11):
        super().__init__()
        self.encoder = vgg16_blocks(batch_norm=True)
        # The decoder mirrors the encoder: stage k undoes block 5-k, and its last conv maps to the
        # channels of the shallower block it hands over to (512, 256, 128, 64, 64).
        hand_over = [64] + [widths[-1] for widths in VGG16_BLOCKS[:-1]]
        decoder = [
            conv_block(VGG16_BLOCKS[b][-1], (*VGG16_BLOCKS[b][:-1], hand_over[b]), batch_norm=True)
            for b in reversed(range(len(VGG16_BLOCKS)))
        ]
        self.decoder = nn.ModuleList(decoder)
        self.classifier = nn.Conv2d(64, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = []  # (indices, size before pooling) per encoder block
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, idx = F.max_pool2d(x, 2, stride=2, return_indices=True)
            pools.append((idx, size))
        for block, (idx, size) in zip(self.decoder, reversed(pools)):
            x = F.max_unpool2d(x, idx, kernel_size=2, stride=2, output_size=size)
            x = block(x)
        return self.classifier(x)


def segnet_vgg16(num_classes: int = 11) -> SegNet:
    """The registry's builder (no weights; :func:`core.segmentation.vgg16.init_from_vgg19` initialises the encoder)."""
    return SegNet(num_classes)
