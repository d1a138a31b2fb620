"""Which layers of a model can be looked at, by name, and how to read one layer's output.

A visualisation needs "a model + a list of named layers". Each model family may name its
layers the way papers do (VGG: ``conv1_1``, ``relu4_2``, ``pool5``); any other conv net gets
the names of :meth:`torch.nn.Module.named_modules` for its conv / activation / pooling
layers, so a new model in the registry plugs in without code here. A family registers a
lister with :func:`register_layer_lister` keyed by its record's ``builder`` string.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Callable

import torch
from torch import nn

from core.backbones.vgg import VGG19_LAYERS
from core.engines import Accelerated
from core.errors import UserError
from core.visualize.receptive_field import ReceptiveField, receptive_fields
from weights import create, get_record, list_models

#: Modules whose output is worth showing: convolutions, their nonlinearities, pooling.
VISIBLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.ReLU6,
    nn.MaxPool2d, nn.AvgPool2d,
)

#: The first layer shown: the first whose units see at least this many pixels (VGG-19's conv3_1). Its patches
#: show an edge, a colour or a texture that the nine agree on; conv1_1's 3 x 3 pixels are colour dots.
FIRST_VIEW_FIELD = 24

LayerLister = Callable[[nn.Module], dict[str, str]]
_LISTERS: dict[str, LayerLister] = {}


def register_layer_lister(builder: str, lister: LayerLister) -> None:
    """``lister(model)`` returns {display name: ``named_modules`` path} in forward order."""
    _LISTERS[builder] = lister


def generic_layers(model: nn.Module) -> dict[str, str]:
    """Every conv / activation / pooling module of ``model``, named by its module path."""
    return {name: name for name, m in model.named_modules() if name and isinstance(m, VISIBLE_TYPES)}


def vgg19_layers(model: nn.Module) -> dict[str, str]:
    """VGG-19's layers under the lecture's names (``conv1_1`` -> ``"0"``), the names its encoder's taps take."""
    return {name: str(index) for name, index in VGG19_LAYERS.items()}


register_layer_lister("core.backbones.vgg:vgg19_features", vgg19_layers)


def list_layers(model: nn.Module, builder: str | None = None) -> dict[str, str]:
    """{display name: module path} for ``model``; ``builder`` picks a family's own names."""
    lister = _LISTERS.get(builder or "", generic_layers)
    layers = lister(model)
    modules = dict(model.named_modules())
    missing = [path for path in layers.values() if path not in modules]
    if missing:
        raise ValueError(f"layer lister for {builder!r} names modules the model lacks: {missing[:3]}")
    return layers


def pytorch_view(model: nn.Module) -> nn.Module:
    """``model`` as PyTorch runs it, for looking inside: a part that a faster engine serves (an OpenVINO or bf16
    :class:`core.engines.Accelerated`, installed in the app's shared copy) is swapped back for the PyTorch module it
    keeps. An OpenVINO part runs no PyTorch layer, so no hook would fire, and a wrapper renames every layer inside.

    The parents of a swapped part are shallow copies (parameters shared, nothing is copied); the served model is
    unchanged. A model without engines is returned as it is.
    """
    if isinstance(model, Accelerated):
        return pytorch_view(model.module)
    children = dict(model.named_children())
    swapped = {name: pytorch_view(child) for name, child in children.items()}
    if all(swapped[name] is child for name, child in children.items()):
        return model
    view = copy.copy(model)
    view._modules = {**model._modules, **swapped}  # a dict of its own: the served model keeps its parts
    return view


def get_module(model: nn.Module, path: str) -> nn.Module:
    return dict(model.named_modules())[path]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first ``Conv2d`` that sees the image (3 input channels), in definition order."""
    for _, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return m
    raise ValueError("the model has no convolution over an RGB input")


class _Stop(Exception):
    """Raised by the hook once the wanted layer has run: deeper layers are never computed."""


def layer_outputs(model: nn.Module, paths: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of modules ``paths`` for input ``x`` (Bx3xHxW, already normalised) -> {path: BxCxhxw}.

    The forward pass stops as soon as every wanted module has run, so reading conv1_1 costs
    one conv. Gradients flow if ``x`` requires them (activation maximisation uses this).
    A module called several times in one pass (a shared ReLU) gives its first output.
    """
    wanted = set(paths)
    captured: dict[str, torch.Tensor] = {}
    # The model is shared (the app caches one copy for every visitor): while these hooks are registered,
    # another thread's forward pass through it runs them too, and must neither be stopped nor captured.
    owner = threading.get_ident()

    def make_hook(path):
        def hook(_module, _inputs, output):
            if threading.get_ident() != owner:
                return
            if path not in captured:
                captured[path] = output[0] if isinstance(output, (tuple, list)) else output
            if wanted <= captured.keys():
                raise _Stop

        return hook

    modules = dict(model.named_modules())
    handles = [modules[p].register_forward_hook(make_hook(p)) for p in wanted]
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = wanted - captured.keys()
    if missing:
        raise ValueError(f"layers {sorted(missing)} did not run in the model's forward pass")
    return {p: captured[p] for p in paths}


def layer_output(model: nn.Module, path: str, x: torch.Tensor) -> torch.Tensor:
    """Output of module ``path`` for ``x`` (Bx3xHxW normalised) -> BxCxhxw; see :func:`layer_outputs`."""
    return layer_outputs(model, [path], x)[path]


def _architecture(name: str) -> nn.Module:
    """The model's modules without weights; on the meta device where the builder allows it,
    so listing VGG-19's layers does not initialise its 140 M parameters."""
    try:
        with torch.device("meta"):
            return create(name, pretrained=False)
    except Exception:  # a builder that reads a file or needs real tensors
        return create(name, pretrained=False)


def visualizable_models() -> list[str]:
    """Registered models that are PyTorch modules (dlib's models load from a path and are not)."""
    return [n for n in list_models() if not get_record(n).builder_takes_path]


@functools.lru_cache(maxsize=32)
def layer_catalog(name: str) -> dict[str, tuple[str, ReceptiveField]]:
    """{display name: (module path, receptive field)} of registered model ``name``, in forward order.

    Built from the architecture alone (no weights), so the panel can list layers before any
    weight file is read.
    """
    try:
        record = get_record(name)
    except KeyError:
        raise UserError(f"There is no model called '{name}' in this hub.") from None
    if record.builder_takes_path:
        raise UserError(f"The model '{name}' is not a PyTorch network, so its layers cannot be shown.")
    model = _architecture(name)
    layers = list_layers(model, record.builder)
    if not layers:
        raise UserError(f"The model '{name}' has no convolution layers to show.")
    fields = receptive_fields(model)
    return {display: (path, fields.get(path, ReceptiveField())) for display, path in layers.items()}


def default_layer(catalog: dict[str, tuple[str, ReceptiveField]]) -> str:
    """The layer to show first from a :func:`layer_catalog`: the first whose receptive field is at least
    :data:`FIRST_VIEW_FIELD` pixels, else the deepest."""
    return next((name for name, (_, rf) in catalog.items() if rf.size >= FIRST_VIEW_FIELD), list(catalog)[-1])
