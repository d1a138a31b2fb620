"""VGG-19's convolutional part (torchvision layout) and the encoder that every task taps it through.

``vgg19_features()`` is torchvision's ``vgg19().features``: what the weight records build and
what their files hold (``"0.weight"`` is conv1_1). :data:`VGG19_LAYERS` maps the names used in
papers and in the lecture (``conv1_1``, ``relu4_2``, ``pool5``) to indices into it.

:class:`VGGEncoder` runs those layers up to the deepest *tap* it is asked for and returns the
taps, like timm's ``features_only`` models: FCN-8s, SegNet and U-Net take the five ReLUs that
VGG max-pools (:data:`STAGE_ENDS`), Mask R-CNN relu4_4, style transfer Gatys' ReLUs, the ROI
explainer one map. Its weights are a record's (``vgg19-caffe``, ``vgg19-caffe-q8``,
``vgg19.tv_in1k``), resolved and checked like any file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from weights.registry import get_record, load_safetensors, load_state
from weights.resolve import resolve

_BLOCKS = (2, 2, 4, 4, 4)  # convs per block in VGG-19
_WIDTHS = (64, 128, 256, 512, 512)  # output channels of each block's convs


def _layer_table() -> dict[str, tuple[int, int, int]]:
    """name -> (index into ``features``, channels, stride in input pixels of the layer's output)."""
    table, i = {}, 0
    for block, (n_convs, width) in enumerate(zip(_BLOCKS, _WIDTHS), start=1):
        stride = 2 ** (block - 1)
        for conv in range(1, n_convs + 1):
            table[f"conv{block}_{conv}"] = (i, width, stride)
            table[f"relu{block}_{conv}"] = (i + 1, width, stride)
            i += 2
        table[f"pool{block}"] = (i, width, 2 * stride)
        i += 1
    return table


_LAYERS = _layer_table()
#: name -> index into ``features``; e.g. ``conv4_2`` -> 21, ``relu4_2`` -> 22.
VGG19_LAYERS: dict[str, int] = {name: index for name, (index, _, _) in _LAYERS.items()}

#: The ReLU that ends each block, the map VGG max-pools next (strides 1, 2, 4, 8, 16; 64..512 channels):
#: timm's ``vgg19`` ``features_only`` maps, and the taps the frozen segmentation models cache.
STAGE_ENDS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")


def vgg19_features() -> nn.Sequential:
    """VGG-19's 16 conv layers with ReLU and max pooling; no weights (the registry loads them).

    torchvision's own layer builder, without its 120M-parameter classifier (8x faster to build).
    """
    return make_layers(cfgs["E"])


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and stride (in input pixels) of each tap. ``channels()`` and ``reduction()`` answer as timm's
    ``feature_info`` does, so a decoder written for timm's ``features_only`` models takes this encoder too."""

    widths: tuple[int, ...]
    strides: tuple[int, ...]

    def channels(self) -> list[int]:
        return list(self.widths)

    def reduction(self) -> list[int]:
        return list(self.strides)


class VGGEncoder(nn.Sequential):
    """VGG-19's layers up to the deepest of ``taps``; Bx3xHxW (normalised for the weights) -> the taps, shallow first.

    ``taps``: layer names of :data:`VGG19_LAYERS`, returned in network order, each once.
    ``layers``: an existing ``vgg19_features()`` (with a record's weights) whose modules this
    encoder shares, not copies; default: new layers with random weights
    (:meth:`load_pretrained` or the model record's state loader adds ImageNet's).
    ``frozen``: no gradients to the weights (the input can still take them: style transfer).
    The children keep torchvision's indices, so ``encoder[21]`` is conv4_2 and the state-dict
    keys are the weight files' (``"21.weight"``).
    """

    def __init__(self, taps: Iterable[str] = STAGE_ENDS, *, layers: nn.Sequential | None = None, frozen: bool = False):
        taps = set(taps)
        unknown = sorted(taps - VGG19_LAYERS.keys())
        if unknown:
            raise ValueError(f"unknown VGG-19 layer {unknown[0]!r}; choose from {', '.join(VGG19_LAYERS)}")
        if not taps:
            raise ValueError("an encoder needs at least one tap")
        names = sorted(taps, key=VGG19_LAYERS.__getitem__)
        # Always the whole VGG-19 built, then cut: a model's later modules start from the same random
        # numbers for a given seed as before this encoder existed (Mask R-CNN's heads, for one).
        layers = list(layers if layers is not None else vgg19_features())
        depth = VGG19_LAYERS[names[-1]] + 1
        if depth > len(layers):
            raise ValueError(f"{names[-1]} lies deeper than the {len(layers)} layers given")
        super().__init__(*layers[:depth])
        self.taps = tuple(names)
        self._tap_at = {VGG19_LAYERS[name]: name for name in names}
        self.feature_info = FeatureInfo(tuple(_LAYERS[n][1] for n in names), tuple(_LAYERS[n][2] for n in names))
        if frozen:
            self.freeze()

    @property
    def output_stride(self) -> int:
        """Stride of the deepest tap: 8 for relu4_4 (pool4 and block 5 never run), 16 for relu5_4, 32 for pool5."""
        return self.feature_info.strides[-1]

    def freeze(self) -> "VGGEncoder":
        """Stop gradients to the weights (VGG has no BatchNorm, so there are no statistics to freeze)."""
        self.requires_grad_(False)
        return self

    def load_pretrained(self, weights: str = "vgg19-caffe", *, weights_dir=None) -> "VGGEncoder":
        """Load the ImageNet weights of registry record ``weights`` (Caffe or torchvision's) into these layers;
        ``weights_dir``: the operator's weights folder, searched first (``--weights-dir``)."""
        self.load_state_dict(pretrained_state(weights, up_to=self.taps[-1], weights_dir=weights_dir))
        return self

    def unfreeze_from(self, start: str) -> list[nn.Parameter]:
        """Let the layers from ``start`` (``conv5_1``) on train again, to fine-tune the encoder's tail on the maps its
        frozen part cached (:meth:`forward_from`); returns their parameters."""
        params = [p for layer in list(self)[VGG19_LAYERS[start]:] for p in layer.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._run(x, 0, [])

    def forward_from(self, taps: list[torch.Tensor], start: str) -> list[torch.Tensor]:
        """This encoder's taps with those from layer ``start`` on computed again from the tap just before it:
        a fine-tuned tail runs on what the frozen part cached. ``taps``: the encoder's taps (those from ``start``
        on are ignored, and may be left out); the layer before ``start`` must be a tap (pool4 before conv5_1)."""
        begin = VGG19_LAYERS[start]
        kept = [tap for tap, name in zip(taps, self.taps) if VGG19_LAYERS[name] < begin]
        if not kept or VGG19_LAYERS[self.taps[len(kept) - 1]] != begin - 1:
            raise ValueError(f"the layer before {start} is not among this encoder's taps ({', '.join(self.taps)})")
        return self._run(kept[-1], begin, kept)

    def _run(self, x: torch.Tensor, begin: int, out: list[torch.Tensor]) -> list[torch.Tensor]:
        """Layers ``begin``.. on ``x``, appending each tap to ``out``."""
        for index in range(begin, len(self)):
            layer = self[index]
            x = layer(x)
            if index in self._tap_at:
                # The ReLU after a conv works in place: a conv tap must be a copy or it would be rectified too.
                out.append(x.clone() if isinstance(layer, nn.Conv2d) else x)
        return out

    @staticmethod
    def pool(tap: torch.Tensor, *, return_indices: bool = False):
        """VGG's max-pool (2x2, stride 2) of a block-end tap: relu3_4 -> pool3, BxCxHxW -> BxCxH/2xW/2.

        For decoders that start from the taps (training caches them, not the pools). With
        ``return_indices``: (pooled, where each maximum was), the indices SegNet unpools with.
        """
        return F.max_pool2d(tap, 2, stride=2, return_indices=return_indices)


def pretrained_state(weights: str = "vgg19-caffe", *, up_to: str = "pool5", weights_dir=None,
                     path=None) -> dict[str, torch.Tensor]:
    """The ImageNet weights of VGG-19's layers up to ``up_to`` from registry record ``weights``, keyed as
    :class:`VGGEncoder`'s (``"0.weight"``); the file is resolved (``weights_dir`` first) and its sha256 checked
    like any weights, unless ``path`` is that file, already resolved (a model record's extra file)."""
    record = get_record(weights)
    last = VGG19_LAYERS[up_to]
    state = load_state(record, path or resolve(record, weights_dir=weights_dir))
    return {k: v for k, v in state.items() if int(k.split(".")[0]) <= last}


def load_q8_state(path) -> dict[str, torch.Tensor]:
    """Read the 8-bit form (``{i}.weight_q`` uint8 + ``{i}.weight_table``): weight = table[q]."""
    raw = load_file(str(path))
    state = {}
    for key, value in raw.items():
        if key.endswith(".weight_q"):
            prefix = key[: -len(".weight_q")]
            state[f"{prefix}.weight"] = raw[f"{prefix}.weight_table"].float()[value.long()]
        elif key.endswith(".bias"):
            state[key] = value.float()
    return state


def load_timm_state(path) -> dict[str, torch.Tensor]:
    """timm's ``vgg19.tv_in1k`` safetensors -> the state of ``vgg19_features()`` (conv part only).

    timm keeps torchvision's numbering under ``features.``; its classifier (``pre_logits``,
    ``head``) is dropped since no encoder uses it.
    """
    state = load_safetensors(path)
    return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
