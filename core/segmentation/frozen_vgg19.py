"""The frozen ImageNet VGG-19 encoder that FCN-8s, SegNet and U-Net share when trained on a CPU budget.

One encoder for the three (:func:`frozen_vgg19`), frozen, with the Caffe VGG-19 weights of the
``vgg19-caffe`` record, tapped where each decoder reads it: SegNet and U-Net the five ReLU maps that
VGG max-pools (relu1_2, relu2_2, relu3_4, relu4_4, relu5_4: 64..512 channels at strides 1..16),
FCN-8s only pool3, pool4 and pool5. Training runs it once per frame and caches those taps
(:mod:`core.segmentation.train_frozen`, one cache per set of taps); each network's ``decode(taps)``
is the part that trains, and the only part that ships, unless training fine-tunes the encoder's last layers
too (``--tune-from``): they run on the cached tap before them, train, and ship in the model's file.
"""

from __future__ import annotations

import torch

from core.backbones import create_encoder
from core.backbones.vgg import STAGE_ENDS, VGGEncoder, pretrained_state
from weights.delta import add_deltas
from weights.registry import load_safetensors


def frozen_vgg19(taps: tuple[str, ...] = STAGE_ENDS) -> VGGEncoder:
    """The shared encoder, random weights (:func:`load_frozen_vgg19_state` or ``load_pretrained`` add ImageNet's);
    ``taps``: the maps a decoder reads (FCN-8s: only its three pools)."""
    return create_encoder("vgg19", taps=taps, frozen=True)


def imagenet_encoder_state(vgg19_path) -> dict[str, torch.Tensor]:
    """The encoder's ImageNet tensors from ``vgg19_path``, keyed as in the models (``encoder.*``)."""
    encoder = pretrained_state("vgg19-caffe", up_to=STAGE_ENDS[-1], path=vgg19_path)
    return {f"encoder.{k}": v for k, v in encoder.items()}


def load_frozen_vgg19_state(path, vgg19_path) -> dict[str, torch.Tensor]:
    """``encoder.*`` from ``vgg19_path``, the ImageNet VGG-19 file the record names as its extra file (resolved from
    the same weights folder as ``path``), + the shipped file (every trained tensor, fp16): a fine-tuned tail of the
    encoder is in the file, and the file's tensors win over ImageNet's; one stored as its change from ImageNet's
    (:mod:`weights.delta`) is added to it."""
    encoder = imagenet_encoder_state(vgg19_path)
    return {**encoder, **add_deltas(load_safetensors(path), encoder)}
