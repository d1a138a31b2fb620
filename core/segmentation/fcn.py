"""FCN-8s (Long, Shelhamer & Darrell, 2015): a classifier made fully convolutional, with skip fusion.

The paper's VGG-16 is here the ImageNet VGG-19 (:mod:`core.segmentation.frozen_vgg19`, the ImageNet weights at
hand), frozen but for block 5, which the shipped model fine-tuned with the head; ``fc6``/``fc7`` become
convolutions; class scores are predicted at stride 32 and fused (summed) with scores predicted from pool4
(stride 16) and pool3 (stride 8), each fusion after a learned 2x upsampling (transposed conv initialised to
bilinear interpolation, as in the paper); a final 8x upsampling returns to H x W.

One departure, for size: the paper's fc6 is a 7x7x512x4096 conv (103 M weights); here fc6
is a 3x3 conv (256 channels in the shipped model) and fc7 a 1x1 conv (DeepLab-LargeFOV's
reduction), so the head adds a few MB to the encoder.

Input Bx3xHxW (H, W multiples of 32), output BxCxHxW logits.
"""

from __future__ import annotations

import torch
from torch import nn

from core.segmentation.frozen_vgg19 import frozen_vgg19


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights (channels, channels, 2f - f%2, ...) making ConvTranspose2d(stride=f) a bilinear upsampling.

    Per channel (no mixing), the outer product of the 1-D tent ``1 - |i - c| / f``;
    for f = 2 the 1-D tent is (0.25, 0.75, 0.75, 0.25).
    """
    size = 2 * factor - factor % 2
    center = (size - 1) / 2
    tent = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    kernel = torch.zeros(channels, channels, size, size)
    kernel[range(channels), range(channels)] = tent[:, None] * tent[None, :]
    return kernel


def learned_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """x``factor`` transposed conv, starting as exact bilinear interpolation (output = factor * input size)."""
    size = 2 * factor - factor % 2
    up = nn.ConvTranspose2d(channels, channels, size, stride=factor, padding=(size - factor) // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, factor))
    return up


class FCN8sHead(nn.Module):
    """Everything of FCN-8s after the encoder: (pool3, pool4, pool5) -> BxCxHxW logits.

    pool3: Bx``c3``xH/8xW/8, pool4: Bx``c4``xH/16xW/16, pool5: Bx``c5``xH/32xW/32.
    """

    def __init__(self, num_classes: int = 11, fc_channels: int = 1024, c3: int = 256, c4: int = 512,
                 c5: int = 512):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Conv2d(c5, fc_channels, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
        )
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
        self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
        # The paper zero-initialises the skip scores so training starts from FCN-32s' output.
        for score in (self.score_pool4, self.score_pool3):
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        self.up2_fr = learned_upsampling(num_classes, 2)
        self.up2_pool4 = learned_upsampling(num_classes, 2)
        self.up8 = learned_upsampling(num_classes, 8)

    def forward(self, pool3: torch.Tensor, pool4: torch.Tensor, pool5: torch.Tensor) -> torch.Tensor:
        scores = self.up2_fr(self.score_fr(self.fc(pool5)))            # stride 16
        scores = self.up2_pool4(scores + self.score_pool4(pool4))       # stride 8
        return self.up8(scores + self.score_pool3(pool3))               # stride 1


#: What FCN-8s reads of VGG: the pools at strides 8, 16 and 32, and nothing shallower (so a frame's cached
#: features are ~2.4 MB at 480x360, not the 45 MB of the five block-end ReLUs that SegNet and U-Net need).
FCN_TAPS = ("pool3", "pool4", "pool5")


class FCN8s(nn.Module):
    """:class:`FCN8sHead` on the last three maps of an encoder whose last three strides are 8, 16 and 32
    (a VGG encoder tapped at :data:`FCN_TAPS`).

    Input: what the encoder's weights expect (the frozen VGG-19: Caffe-normalised BGR), H, W multiples of 32;
    output: BxCxHxW logits.
    """

    stride = 32

    def __init__(self, encoder: nn.Module, num_classes: int = 11, fc_channels: int = 256):
        super().__init__()
        strides = encoder.feature_info.reduction()[-3:]
        if strides != [8, 16, 32]:
            raise ValueError(f"FCN-8s reads maps at strides 8, 16, 32; the encoder's last three are at {strides}")
        self.encoder = encoder
        c3, c4, c5 = encoder.feature_info.channels()[-3:]
        self.head = FCN8sHead(num_classes, fc_channels, c3=c3, c4=c4, c5=c5)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """The encoder's maps -> logits: the last three are pool3, pool4 and pool5."""
        return self.head(*maps[-3:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))


def fcn8s_vgg19_frozen(num_classes: int = 11) -> FCN8s:
    """The registry's builder, encoder frozen: the head trains and ships, with block 5 where training fine-tunes it
    (``--tune-from conv5_1``; :func:`core.segmentation.frozen_vgg19.load_frozen_vgg19_state` adds the rest of the
    encoder's weights)."""
    return FCN8s(frozen_vgg19(FCN_TAPS), num_classes)
