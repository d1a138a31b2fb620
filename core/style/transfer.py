"""Gatys-style transfer as a generator of progress: optimise the pixels of G to minimise J(G).

    for p in transfer(vgg, record.normalize, content, [style], TransferConfig(steps=100)):
        print(p.step, p.total)          # p.image every ``preview_every`` steps and at the end

Speed without changing the maths: the network stops at the deepest layer in use, its
weights take no gradients, the style Grams and the content target are computed once, and on
a GPU or a CPU with bf16 hardware the network runs under bf16 autocast (Grams and costs stay fp32).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core import engines
from core.backbones.vgg import VGGEncoder
from core.runtime import settings
from core.style.costs import (
    STYLE_NORMALIZATIONS,
    blend_grams,
    content_cost,
    gram_matrix,
    rescale_gram,
    style_cost,
    total_cost,
    total_variation,
)
from core.style.features import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, relu_name

INITS = ("noise", "content", "style")
OPTIMIZERS = ("lbfgs", "adam")


def default_style_weights() -> dict[str, float]:
    """lambda[l] = 1/5 on each of Gatys' five style layers."""
    return {layer: 1.0 / len(DEFAULT_STYLE_LAYERS) for layer in DEFAULT_STYLE_LAYERS}


@dataclass
class TransferConfig:
    """Every knob of the lecture's J(G) and of the optimisation.

    ``alpha``/``beta`` weigh content and style; the default ratio alpha/beta = 1e-3 is Gatys'
    (with ``normalization="gatys"``). ``style_weights`` maps layer -> lambda[l].
    """

    alpha: float = 1.0
    beta: float = 1e3
    style_weights: dict[str, float] = field(default_factory=default_style_weights)
    content_layer: str = DEFAULT_CONTENT_LAYER
    normalization: str = "gatys"
    tv_weight: float = 0.0
    init: str = "noise"
    optimizer: str = "lbfgs"
    steps: int = 100
    lr: float = 0.02  # Adam's step on pixels in [0, 1]; L-BFGS uses its own step length 1
    history_size: int = 100  # L-BFGS memory, as in the PyTorch tutorial
    blend: Sequence[float] | None = None  # one weight per style image; equal when None
    style_scale: float = 1.0  # style image's longest side relative to the content's
    keep_colors: bool = False
    seed: int = 0
    preview_every: int = 10  # attach the image every k steps (0: only at the end)
    #: bf16 autocast for the network (Grams and costs stay fp32); None: where the device computes bf16 in hardware
    #: (CUDA; a CPU with AMX or AVX512-BF16: bench/style.py measures it) unless the runtime setting is "eager".
    amp: bool | None = None
    channels_last: bool = True
    compile: bool = False  # torch.compile the network (CUDA; pays off for hundreds of steps)

    def check(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
        if self.normalization not in STYLE_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {STYLE_NORMALIZATIONS}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if not any(w for w in self.style_weights.values()) and self.beta:
            raise ValueError("give at least one style layer a non-zero weight")
        if self.style_scale <= 0:
            raise ValueError("style_scale must be positive")


def uses_bf16(config: TransferConfig, device: torch.device) -> bool:
    """Whether :func:`transfer` runs the network under bf16 autocast with ``config`` on ``device``."""
    if config.amp is not None:
        return config.amp
    return settings().runtime != "eager" and (device.type == "cuda" or engines.cpu_has_bf16())


@dataclass
class Progress:
    """One optimisation step: the costs at the image before the step (the last one: after it), and that image.

    ``done`` marks the last one: the image returned (in [0, 1], recoloured with ``keep_colors``) with the costs
    of that very image; ``step`` < ``config.steps`` there when the run was stopped early.
    """

    step: int
    content: float
    style: float
    tv: float
    total: float
    seconds: float  # since the first step started (setup excluded)
    image: torch.Tensor | None = None  # 1 x 3 x H x W in [0, 1] on the CPU, when attached
    done: bool = False
    grams: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # at the end: layer -> (style, generated) C x C


def as_batch(image: torch.Tensor) -> torch.Tensor:
    """3 x H x W or 1 x 3 x H x W -> 1 x 3 x H x W (what :func:`core.images.to_tensor` gives -> what the net takes)."""
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"expected one RGB image 3 x H x W or 1 x 3 x H x W, got {tuple(image.shape)}")
    return image


def resize_longest(image: torch.Tensor, longest: int) -> torch.Tensor:
    """B x 3 x H x W -> the same with max(H, W) = ``longest`` (antialiased, aspect kept)."""
    h, w = image.shape[-2:]
    scale = longest / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def keep_colors(generated: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The generated image's luminance with the content's chroma (YIQ), as in Gatys et al. 2017.

    Both B x 3 x H x W RGB in [0, 1] (``content`` may have batch 1) -> B x 3 x H x W.
    """
    rgb_to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=generated.dtype, device=generated.device,
    )
    yiq_g = torch.einsum("ij,bjhw->bihw", rgb_to_yiq, generated)
    yiq_c = torch.einsum("ij,bjhw->bihw", rgb_to_yiq, content.to(generated))
    mixed = torch.cat([yiq_g[:, :1], yiq_c[:, 1:].expand(yiq_g.shape[0], -1, -1, -1)], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(rgb_to_yiq), mixed).clamp(0, 1)


def initial_image(config: TransferConfig, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """G at step 0: uniform noise (the lecture), the content image, or the style image resized to it."""
    if config.init == "content":
        return content.clone()
    if config.init == "style":
        return F.interpolate(style, size=content.shape[-2:], mode="bilinear", antialias=True).clamp(0, 1)
    generator = torch.Generator().manual_seed(config.seed)
    return torch.rand(content.shape, generator=generator).to(content)


def transfer(
    features: nn.Sequential,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    config: TransferConfig | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Progress]:
    """Optimise G (1 x 3 x H x W, H x W of ``content``) and yield a :class:`Progress` per step.

    ``features``: VGG-19's ``features`` (eval mode, on the device to use); ``normalize``: the
    weights' preprocessing (``record.normalize``), RGB in [0, 1] -> network input;
    ``content``: 1 x 3 x H x W in [0, 1]; ``styles``: one or more 1 x 3 x h x w in [0, 1].
    ``stop()`` is asked after every step: when it says True the run ends there with a last, ``done``
    progress (the image so far, its costs and Grams), as a finished run does. Closing the generator
    instead stops at once, without that result, and frees the GPU memory.
    """
    config = config or TransferConfig()
    config.check()
    if not styles:
        raise ValueError("at least one style image is needed")
    if config.blend is not None and len(config.blend) != len(styles):
        raise ValueError("give one blend weight per style image")
    device = next(features.parameters()).device
    cuda = device.type == "cuda"

    style_layers = {k: w for k, w in config.style_weights.items() if w}
    # The lecture's conv4_2 is the encoder's tap relu4_2; the encoder shares the modules of ``features`` and stops
    # at the deepest layer in use. Frozen: only the pixels of G get gradients.
    layer_of = {relu_name(layer): layer for layer in [*style_layers, config.content_layer]}
    net = VGGEncoder(layer_of, layers=features, frozen=True)
    # channels_last is the layout cuDNN's tensor-core kernels want; on the shared 2-core CPU
    # of the build machine it was neither clearly faster nor slower (within noise at 256 px).
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    run_net = torch.compile(net) if config.compile else net
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(config, device))

    def activations(rgb01: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast:
            maps = run_net(normalize(rgb01).contiguous(memory_format=memory_format))
        return {layer_of[tap]: a for tap, a in zip(net.taps, maps)}

    content = as_batch(content).to(device, torch.float32)
    longest = max(content.shape[-2:])
    styles = [resize_longest(as_batch(s).to(device, torch.float32), round(longest * config.style_scale))
              for s in styles]
    with torch.no_grad():
        content_acts = activations(content)
        content_target = content_acts[config.content_layer].float()
        # The generated image has the content's size; its layers' H*W tell how to rescale Grams
        # of a style image of another size.
        positions_g = {layer: content_acts[layer].shape[2] * content_acts[layer].shape[3] for layer in style_layers}
        del content_acts
        grams = []
        for s in styles:
            acts = activations(s)
            grams.append({layer: rescale_gram(gram_matrix(acts[layer]), acts[layer].shape[2] * acts[layer].shape[3],
                                              positions_g[layer])
                          for layer in style_layers})
            del acts
        style_targets = blend_grams(grams, list(config.blend or [1.0] * len(styles))) if style_layers else {}
        del grams

    # G itself stays in the default layout: L-BFGS flattens its gradient with .view(-1).
    image = initial_image(config, content, styles[0]).to(device).contiguous()
    image.requires_grad_(True)
    if config.optimizer == "lbfgs":
        # max_iter=1: one function evaluation per step() call, so each step can be reported;
        # the curvature history lives in the optimiser's state across calls. No early stop:
        # the user asked for N steps.
        optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=config.history_size,
                                      tolerance_grad=0.0, tolerance_change=0.0)
    else:
        optimizer = torch.optim.Adam([image], lr=config.lr)

    last = {}

    def costs(acts, x):
        jc = content_cost(content_target, acts[config.content_layer])
        js = style_cost(style_targets, acts, style_layers, config.normalization) if style_layers else jc * 0
        tv = total_variation(x) if config.tv_weight else jc * 0
        return jc, js, tv, total_cost(jc, js, config.alpha, config.beta, tv, config.tv_weight)

    def closure():
        optimizer.zero_grad(set_to_none=True)
        jc, js, tv, j = costs(activations(image), image)
        j.sum().backward()
        last.update(jc=jc.detach(), js=js.detach(), tv=tv.detach(), j=j.detach())
        return j.sum()

    def finish(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float()
        return keep_colors(x, content) if config.keep_colors else x

    try:
        start = time.perf_counter()
        for step in range(1, config.steps + 1):
            show = config.preview_every and step % config.preview_every == 0
            # The image this step's costs are measured on, copied before the step changes it in place.
            shown = finish(image).to("cpu", copy=True) if show else None
            optimizer.step(closure)
            with torch.no_grad():
                # Back into [0, 1] after every step, as the PyTorch tutorial does in its closure: each cost is then
                # that of a real image. Left unclamped, L-BFGS wanders far outside and the final image, clamped
                # only at the end, cost 2-4x the last reported J.
                image.clamp_(0, 1)
            if step == config.steps or (stop is not None and stop()):
                break
            yield Progress(step, float(last["jc"]), float(last["js"]), float(last["tv"]), float(last["j"]),
                           time.perf_counter() - start, shown)
        with torch.no_grad():
            final = finish(image)
            # The costs of the image returned (recoloured too with keep_colors), not of the optimiser's iterate.
            acts = activations(final)
            jc, js, tv, j = costs(acts, final)
            view = {layer: (style_targets[layer][0].cpu(), gram_matrix(acts[layer])[0].cpu()) for layer in style_layers}
        seconds = time.perf_counter() - start
        yield Progress(step, float(jc), float(js), float(tv), float(j), seconds, final.cpu(), True, view)
    finally:
        # Runs on normal end and when the caller closes the generator (a stopped run).
        optimizer.state.clear()
        last.clear()
        image.grad = None
        if cuda:
            torch.cuda.empty_cache()
