"""VGG-16's 13 convolutions as a 5-block encoder, initialised from the Caffe VGG-19 at hand offline.

VGG-16 and VGG-19 share their layout except that blocks 3-5 hold 3 convs instead of 4.
Only VGG-19's ImageNet weights are available here (``../shared/weights/vgg19-caffe``), so
VGG-16's conv *k* of each block takes VGG-19's conv *k* of the same block (the last conv of
blocks 3-5 is dropped). That is an initialisation, not the published VGG-16: the networks
that use it fine-tune or retrain on top of it, and their model cards say so.
"""

from __future__ import annotations

import torch
from torch import nn

from core.backbones.vgg import VGG19_LAYERS

#: Output channels of each conv, block by block (VGG-16, configuration D).
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def conv_block(cin: int, widths: tuple[int, ...], *, batch_norm: bool) -> nn.Sequential:
    """3x3 same-padded convs (+BN) + ReLU; keeps H x W."""
    layers: list[nn.Module] = []
    for cout in widths:
        layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        cin = cout
    return nn.Sequential(*layers)


def vgg16_blocks(*, batch_norm: bool, cin: int = 3) -> nn.ModuleList:
    """Five conv blocks (no pooling: the networks pool themselves, SegNet keeping the indices)."""
    blocks = []
    for widths in VGG16_BLOCKS:
        blocks.append(conv_block(cin, widths, batch_norm=batch_norm))
        cin = widths[-1]
    return nn.ModuleList(blocks)


def vgg19_source_index(block: int, conv: int) -> int:
    """Index in VGG-19's ``features`` whose weights initialise VGG-16's conv ``conv`` (1-based) of ``block``."""
    return VGG19_LAYERS[f"conv{block}_{conv}"]


@torch.no_grad()
def init_from_vgg19(blocks: nn.ModuleList, vgg19_state: dict[str, torch.Tensor]) -> int:
    """Copy VGG-19 conv weights (torchvision ``features`` keys) into :func:`vgg16_blocks`; returns convs copied.

    Biases go to the conv when it has one; with BN the conv has none and BN starts at identity
    (the ImageNet statistics are re-estimated on CamVid).
    """
    copied = 0
    for b, block in enumerate(blocks, start=1):
        convs = [m for m in block if isinstance(m, nn.Conv2d)]
        for c, conv in enumerate(convs, start=1):
            src = vgg19_source_index(b, c)
            conv.weight.copy_(vgg19_state[f"{src}.weight"].to(conv.weight.dtype))
            if conv.bias is not None:
                conv.bias.copy_(vgg19_state[f"{src}.bias"].to(conv.bias.dtype))
            copied += 1
    return copied
