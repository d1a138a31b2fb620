"""SegNet (Badrinarayanan et al., 2017): a VGG encoder, and a decoder that unpools with the encoder's pooling indices.

VGG max-pools after each block; each decoder stage calls ``F.max_unpool2d`` with the indices
of the mirrored pool, which puts every value back at the position its maximum came from
(zeros elsewhere), and then densifies the sparse map with trainable convs. That is SegNet's
whole idea: boundaries come back from the indices, not from interpolation, and the decoder
stores no encoder feature maps.

Input: Bx3xHxW (H, W multiples of 32; :func:`core.segmentation.padding.run_padded` pads);
output: BxCxHxW logits (softmax is applied by the loss / the argmax at inference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.backbones.vgg import VGGEncoder
from core.segmentation.blocks import conv_block
from core.segmentation.frozen_vgg19 import frozen_vgg19

#: Output channels of each conv of VGG-16 (configuration D), block by block: the paper's decoder mirrors them.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


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


class SegNet(nn.Module):
    """:class:`SegNetDecoder` on a VGG encoder's five block-end taps, max-pooled with indices as VGG pools them.

    The project's encoder is the frozen ImageNet VGG-19, not the paper's VGG-16, because
    VGG-19's ImageNet weights are the ones at hand; the decoder is the paper's (13 convs,
    mirroring VGG-16). Input: what the encoder's weights expect (Caffe-normalised BGR), H, W multiples of 32.
    """

    stride = 32

    def __init__(self, encoder: VGGEncoder, num_classes: int = 11):
        super().__init__()
        self.encoder = encoder
        self.decoder = SegNetDecoder(num_classes)

    def decode(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """The five block-end taps -> logits. VGG's pool1..pool5 run here, on the taps (what training caches),
        keeping where each maximum was; the decoder unpools with those very indices, deepest first."""
        pools = []
        for tap in taps:
            x, idx = self.encoder.pool(tap, return_indices=True)
            pools.append((idx, tap.shape[-2:]))
        return self.decoder(x, pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))


def segnet_vgg19_frozen(num_classes: int = 11) -> SegNet:
    """The registry's builder: only the decoder trains and ships
    (:func:`core.segmentation.frozen_vgg19.load_frozen_vgg19_state` adds the encoder's weights)."""
    return SegNet(frozen_vgg19(), num_classes)
