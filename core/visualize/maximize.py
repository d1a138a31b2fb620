"""Activation maximisation: optimise an input image so that one unit responds strongly.

Plain gradient ascent on pixels gives high-frequency noise that excites the unit without
looking like anything. The regularisers that make the result readable follow lucent /
Olah et al., "Feature Visualization" (Distill 2017):

- the image lives in a Fourier basis whose coefficients are scaled by ``1 / frequency``, so
  a step of gradient ascent changes low frequencies as much as high ones;
- its colours live in a *decorrelated* space (the square root of ImageNet's colour
  covariance), so one parameter moves brightness and others move hue;
- each step looks at a randomly padded, jittered, scaled and rotated copy, so the image must
  excite the unit wherever and however large it sits, which removes pixel-exact tricks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from core.visualize.layers import layer_output

#: Square root of ImageNet's RGB colour correlation (from lucent), columns scaled so the largest
#: has norm 1: multiplying decorrelated coordinates by it gives RGB.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


@dataclass(frozen=True)
class Regularisers:
    """Which of the readability tricks to use (all on by default, as lucent does)."""

    fourier: bool = True
    decorrelate: bool = True
    pad: int = 12
    jitter: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.9 .. 1.1
    degrees: tuple[float, ...] = tuple(range(-10, 11))

    @classmethod
    def none(cls) -> "Regularisers":
        """Plain pixel-space gradient ascent, for comparison."""
        return cls(fourier=False, decorrelate=False, pad=0, jitter=0, scales=(1.0,), degrees=(0.0,))


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """h x (w//2+1) weights ``1 / max(|f|, 1/max(h, w)) ** decay_power`` of ``rfft2`` coefficients.

    |f| is the frequency in cycles per pixel; the floor stops the DC term from exploding.
    """
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freqs = (fx**2 + fy**2).sqrt()
    return 1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay_power


class ImageParam(nn.Module):
    """A learnable batch of images ``forward() -> Bx3xHxW`` in [0, 1]."""

    def __init__(self, size: int, batch: int = 1, reg: Regularisers = Regularisers(), sd: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.size, self.reg = size, reg
        if reg.fourier:
            shape = (batch, 3, size, size // 2 + 1, 2)  # real and imaginary parts
            self.register_buffer("scale", spectrum_scale(size, size))
        else:
            shape = (batch, 3, size, size)
        self.raw = nn.Parameter(torch.randn(shape, generator=generator) * sd)

    def forward(self) -> torch.Tensor:
        if self.reg.fourier:
            spectrum = torch.view_as_complex(self.raw) * self.scale
            # "ortho" keeps pixel variance independent of the size; /4 is lucent's constant.
            x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        else:
            x = self.raw
        if self.reg.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", COLOR_CORRELATION.to(x), x)
        return torch.sigmoid(x)


def random_transform(x: torch.Tensor, reg: Regularisers, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bx3xHxW -> a randomly padded, jittered, scaled and rotated copy (output size may differ)."""

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    if reg.pad:
        x = F.pad(x, [reg.pad] * 4, mode="constant", value=0.5)
    if reg.jitter:
        dy, dx = (int(v) for v in torch.randint(0, reg.jitter + 1, (2,), generator=generator))
        h, w = x.shape[-2:]
        x = x[..., dy:h - reg.jitter + dy, dx:w - reg.jitter + dx]
    scale, angle = float(pick(reg.scales)), math.radians(float(pick(reg.degrees)))
    if scale != 1.0 or angle != 0.0:
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x


def unit_objective(acts: torch.Tensor, unit: int) -> torch.Tensor:
    """BxCxhxw activations -> B scores: the mean of channel ``unit`` over the map (lucent's "channel")."""
    return acts[:, unit].mean(dim=(-2, -1))


def maximize(model: nn.Module, layer_path: str, unit: int, normalize, *, size: int = 128, steps: int = 256,
             lr: float = 0.05, reg: Regularisers = Regularisers(), seed: int = 0,
             device: torch.device | str = "cpu",
             on_step: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, list[float]]:
    """Optimise a ``size`` x ``size`` image to excite ``unit`` of the module at ``layer_path``.

    ``normalize`` maps RGB in [0, 1] (Bx3xHxW) to the model's input (``record.normalize``).
    ``on_step(done, steps)`` is called after each step (a progress bar). Returns (3xHxW image in [0, 1],
    the objective after each step). The model must be in eval mode; its parameters are not changed.
    """
    generator = torch.Generator().manual_seed(seed)
    param = ImageParam(size, reg=reg, generator=generator).to(device)
    dtype = next(iter(model.parameters())).dtype
    optimiser = torch.optim.Adam(param.parameters(), lr=lr)
    history: list[float] = []
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        x = random_transform(param(), reg, generator)
        acts = layer_output(model, layer_path, normalize(x).to(dtype))
        if not 0 <= unit < acts.shape[1]:
            raise UserError(f"This layer has units 0 to {acts.shape[1] - 1}; unit {unit} does not exist.")
        score = unit_objective(acts, unit).float().sum()
        (-score).backward()
        optimiser.step()
        history.append(float(score.detach()))
        if on_step is not None:
            on_step(len(history), steps)
    with torch.no_grad():
        image = param()[0].float().cpu()
    return image, history
