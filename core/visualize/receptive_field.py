"""Receptive fields computed from a network's layers (kernel, stride, padding, dilation).

For a unit of a layer, three numbers describe the input pixels it can see (Araujo et al.,
"Computing receptive fields of convolutional neural networks", Distill 2019):

- ``size``: the side of the square of input pixels it depends on,
- ``jump``: how many input pixels apart two neighbouring units are,
- ``start``: the input pixel (maybe fractional) at the centre of unit (0, 0).

A layer with kernel k, stride s, padding p and dilation d (effective kernel
``k' = d (k - 1) + 1``) maps the geometry of its input to that of its output::

    jump_out  = jump_in * s
    size_out  = size_in + (k' - 1) * jump_in
    start_out = start_in + ((k' - 1) / 2 - p) * jump_in

The graph of the model is read with ``torch.fx`` so branches (residual adds, concatenation)
are followed; where two branches meet the result sees the union of both fields. Models fx
cannot trace are read as the chain of their leaf modules in execution order.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ReceptiveField:
    size: float = 1.0
    jump: float = 1.0
    start: float = 0.0

    def through(self, kernel: int, stride: int = 1, padding: float = 0, dilation: int = 1) -> "ReceptiveField":
        """The field after one conv / pool layer with these hyper-parameters (the formula above)."""
        k = dilation * (kernel - 1) + 1
        return ReceptiveField(
            size=self.size + (k - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((k - 1) / 2 - padding) * self.jump,
        )

    def upsampled(self, factor: float, kernel: int = 1) -> "ReceptiveField":
        """Transposed conv / unpooling / interpolation by ``factor`` (an estimate: units get closer)."""
        jump = self.jump / factor
        return ReceptiveField(
            size=self.size + (kernel - 1) * jump,
            jump=jump,
            start=self.start - (1 - 1 / factor) / 2 * self.jump,
        )

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """Input pixels (left, top, right, bottom), right/bottom exclusive, seen by unit (y, x).

        May reach outside the image: those pixels are the layers' zero padding.
        """
        half = (self.size - 1) / 2
        left = math.floor(self.start + x * self.jump - half)
        top = math.floor(self.start + y * self.jump - half)
        side = int(math.ceil(self.size))
        return left, top, left + side, top + side


def union(fields: list[ReceptiveField]) -> ReceptiveField:
    """Where branches meet (add, cat), a unit sees the union of what each branch sees."""
    if len(fields) == 1:
        return fields[0]
    lo = min(f.start - (f.size - 1) / 2 for f in fields)
    hi = max(f.start + (f.size - 1) / 2 for f in fields)
    return ReceptiveField(size=hi - lo + 1, jump=max(f.jump for f in fields), start=(lo + hi) / 2)


def _pair(v) -> int:
    """Square kernels only: the first entry of a (h, w) pair."""
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def _padding(padding, kernel: int, dilation: int) -> float:
    if isinstance(padding, str):  # "same" keeps the size: half the effective kernel on each side
        return (dilation * (kernel - 1)) / 2 if padding == "same" else 0
    return _pair(padding)


def through_module(rf: ReceptiveField, m: nn.Module) -> ReceptiveField:
    """The field after module ``m``; modules that do not move pixels leave it unchanged."""
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(m.kernel_size)
        s = _pair(m.stride) if m.stride is not None else k
        d = _pair(getattr(m, "dilation", 1))
        return rf.through(k, s, _padding(m.padding, k, d), d)
    if isinstance(m, nn.ConvTranspose2d):
        return rf.upsampled(_pair(m.stride), kernel=_pair(m.kernel_size))
    if isinstance(m, nn.MaxUnpool2d):
        return rf.upsampled(_pair(m.stride))
    if isinstance(m, nn.Upsample) and m.scale_factor is not None:
        return rf.upsampled(float(_pair(m.scale_factor)))
    return rf


_POOL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d, torch.nn.functional.max_pool2d_with_indices}


def _through_function(rf: ReceptiveField, fn, args, kwargs) -> ReceptiveField:
    if fn in _POOL_FUNCTIONS:
        k = _pair(kwargs.get("kernel_size", args[1] if len(args) > 1 else 1))
        s = kwargs.get("stride", args[2] if len(args) > 2 else None)
        s = _pair(s) if s not in (None, [], ()) else k
        p = _pair(kwargs.get("padding", args[3] if len(args) > 3 else 0))
        return rf.through(k, s, p)
    if fn is F.interpolate and kwargs.get("scale_factor"):
        return rf.upsampled(float(_pair(kwargs["scale_factor"])))
    return rf


def receptive_fields(model: nn.Module, example: torch.Tensor | None = None) -> dict[str, ReceptiveField]:
    """{module path: field of its output units in input pixels}, for every module that runs."""
    try:
        return _fields_from_graph(model)
    except Exception:  # fx cannot trace data-dependent control flow: fall back to the run order
        if example is None:
            param = next(iter(model.parameters()), None)
            example = torch.zeros(1, 3, 64, 64, device=param.device if param is not None else "cpu")
        return _fields_from_run(model, example)


def _fields_from_graph(model: nn.Module) -> dict[str, ReceptiveField]:
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    at: dict[torch.fx.Node, ReceptiveField] = {}
    out: dict[str, ReceptiveField] = {}
    seen_input = False
    for node in graph.nodes:
        inputs = [at[a] for a in node.all_input_nodes if a in at]
        if node.op == "placeholder":
            if not seen_input:  # the image; later placeholders are options
                at[node] = ReceptiveField()
                seen_input = True
            continue
        if not inputs:
            continue
        rf = union(inputs)
        if node.op == "call_module":
            rf = through_module(rf, modules[node.target])
            out.setdefault(node.target, rf)
        elif node.op == "call_function" and node.target is not operator.getitem:
            rf = _through_function(rf, node.target, node.args, node.kwargs)
        at[node] = rf
    return out


def _fields_from_run(model: nn.Module, example: torch.Tensor) -> dict[str, ReceptiveField]:
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name))
        for name, m in model.named_modules()
        if name and not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    rf, out = ReceptiveField(), {}
    for name in order:
        rf = through_module(rf, modules[name])
        out.setdefault(name, rf)
    return out
