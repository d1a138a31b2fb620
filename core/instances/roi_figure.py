"""Pictures of RoI Pool and RoI Align on an image: the feature grid, the bins, the sample points.

Feature coordinates follow :mod:`core.instances.roi`: cell ``k`` spans pixels
``[k * stride, (k + 1) * stride)``; RoI Align's coordinates have cell centres at integers,
so its feature position ``p`` is pixel ``(p + 0.5) * stride``.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from core.instances.roi import AlignSamples, PoolBins

BOX = (255, 255, 255)
POOL = (239, 68, 68)
ALIGN = (34, 211, 238)
POINT = (250, 204, 21)
GRID = (0, 0, 0, 70)


def zoom_region(box, *, stride: int, size: tuple[int, int], margin_cells: float = 1.5) -> tuple[int, int, int, int]:
    """The part of the image worth showing: the box plus a margin of cells, on cell boundaries."""
    width, height = size
    m = margin_cells * stride
    x1, y1 = max(int((box[0] - m) // stride * stride), 0), max(int((box[1] - m) // stride * stride), 0)
    x2 = min(int(-(-(box[2] + m) // stride) * stride), width)
    y2 = min(int(-(-(box[3] + m) // stride) * stride), height)
    return x1, y1, x2, y2


class _Canvas:
    """The zoomed region, scaled up so feature cells are big enough to draw in."""

    def __init__(self, image: Image.Image, region, target: int):
        self.x0, self.y0 = region[0], region[1]
        w, h = region[2] - region[0], region[3] - region[1]
        self.k = target / max(w, h)
        crop = image.crop(region).resize((max(round(w * self.k), 1), max(round(h * self.k), 1)), Image.NEAREST)
        self.image = crop.convert("RGBA")
        self.overlay = Image.new("RGBA", self.image.size)
        self.draw = ImageDraw.Draw(self.overlay)

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.x0) * self.k, (y - self.y0) * self.k

    def rect(self, x1, y1, x2, y2, colour, width=2):
        self.draw.rectangle((*self.xy(x1, y1), *self.xy(x2, y2)), outline=colour, width=width)

    def grid(self, stride: int, region):
        for x in range(region[0], region[2] + 1, stride):
            self.draw.line((*self.xy(x, region[1]), *self.xy(x, region[3])), fill=GRID, width=1)
        for y in range(region[1], region[3] + 1, stride):
            self.draw.line((*self.xy(region[0], y), *self.xy(region[2], y)), fill=GRID, width=1)

    def done(self) -> Image.Image:
        return Image.alpha_composite(self.image, self.overlay).convert("RGB")


def draw_roi_pool(image: Image.Image, box, bins: PoolBins, *, stride: int, target: int = 480) -> Image.Image:
    """The box (white), the cells RoI Pool rounded it to and its bins widened to whole cells (red)."""
    region = zoom_region(box, stride=stride, size=image.size)
    c = _Canvas(image, region, target)
    c.grid(stride, region)
    for row in bins.cells:
        for y0, y1, x0, x1 in row:
            if y1 > y0 and x1 > x0:
                c.rect(x0 * stride, y0 * stride, x1 * stride, y1 * stride, POOL + (150,), 1)
    bx1, by1, bx2, by2 = bins.box_cells
    c.rect(bx1 * stride, by1 * stride, (bx2 + 1) * stride, (by2 + 1) * stride, POOL, 3)
    c.rect(*box, BOX, 2)
    return c.done()


def draw_roi_align(image: Image.Image, box, samples: AlignSamples, *, stride: int, target: int = 480) -> Image.Image:
    """The exact box split into equal bins (cyan) and the bilinear sample points (yellow)."""
    region = zoom_region(box, stride=stride, size=image.size)
    c = _Canvas(image, region, target)
    c.grid(stride, region)

    def px(p: float) -> float:
        return (p + 0.5) * stride

    ex, ey = samples.edges_x, samples.edges_y
    for x in ex:
        c.draw.line((*c.xy(px(x), px(ey[0])), *c.xy(px(x), px(ey[-1]))), fill=ALIGN, width=2)
    for y in ey:
        c.draw.line((*c.xy(px(ex[0]), px(y)), *c.xy(px(ex[-1]), px(y))), fill=ALIGN, width=2)
    r = max(1.5, min(4.0, 0.08 * stride * c.k))
    for y, x in samples.points.reshape(-1, 2).tolist():
        cx, cy = c.xy(px(x), px(y))
        c.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=POINT)
    c.rect(*box, BOX, 1)
    return c.done()


def tiles(pooled: torch.Tensor, aligned: torch.Tensor, *, size: int = 224) -> list[Image.Image]:
    """RoI Pool's and RoI Align's ``(C, n, n)`` outputs and their difference, as pictures.

    Three channels are shown as colours (the map was the photo itself). More channels are
    shown as their mean, each grid on its own [0, 1] scale: RoI Pool takes a max and RoI Align
    an average, so only the pattern, not the level, is comparable.
    """
    if pooled.shape[0] == 3:
        p, a = pooled.clamp(0, 1), aligned.clamp(0, 1)
        d = (p - a).abs().mean(0)
        pics = [p, a, _heat(d / d.max().clamp(min=1e-6))]
    else:
        p, a = unit_range(pooled.mean(0)), unit_range(aligned.mean(0))
        pics = [_heat(p), _heat(a), _heat((p - a).abs())]
    out = []
    for t in pics:
        array = (t.permute(1, 2, 0) * 255).round().byte().cpu().numpy()
        out.append(Image.fromarray(array).resize((size, size), Image.NEAREST))
    return out


def unit_range(t: torch.Tensor) -> torch.Tensor:
    """``t`` shifted and scaled to [0, 1] (all zeros when constant)."""
    return (t - t.min()) / (t.max() - t.min()).clamp(min=1e-6)


def _heat(t: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` in [0, 1] -> ``(3, n, n)`` from dark blue through magenta to yellow."""
    t = t.clamp(0, 1)
    return torch.stack([t.sqrt(), t**2, (1 - t) * 0.6 + 0.1])
