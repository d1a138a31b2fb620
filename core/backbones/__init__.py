"""Encoders shared by the tasks, created by name, as segmentation_models.pytorch creates its encoders.

    encoder = create_encoder("vgg19", taps=("relu4_4",), frozen=True)   # Bx3xHxW -> [Bx512xH/8xW/8]
    encoder.load_pretrained("vgg19-caffe")                              # or a model record's state loader

An encoder returns a list of named taps, shallow first, and describes them in
``feature_info`` (channels, strides) as timm's ``features_only`` models do; decoders read
that, not the encoder's class.
"""

from __future__ import annotations

from torch import nn

from core.backbones.vgg import VGGEncoder

#: name -> encoder class; each takes ``taps`` and ``frozen`` (see :class:`core.backbones.vgg.VGGEncoder`).
ENCODERS: dict[str, type[nn.Module]] = {"vgg19": VGGEncoder}


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def create_encoder(name: str, **kwargs) -> nn.Module:
    """The encoder ``name`` with random weights, built with ``kwargs`` (``taps=``, ``frozen=``, ...)."""
    try:
        encoder_class = ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}") from None
    return encoder_class(**kwargs)
