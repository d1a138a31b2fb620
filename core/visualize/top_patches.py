"""The image patches that excite a unit most: an index built once, answered instantly.

For every unit (channel) of a layer we keep the ``k`` strongest responses over an image set,
at most ``per_image`` from one image so the nine patches show nine different scenes: for each
response the image id, the unit's position (y, x) and the activation. The patch itself is the
unit's receptive field, cut from the image only when someone asks (no pixels are stored).

An index is one small ``.npz`` file per model and layer::

    {index_dir}/{model}/{image set}/{layer}.npz

with arrays ``value``, ``image``, ``y``, ``x`` (each units x k) and a JSON header (model,
layer, receptive field, where the images are, the names, the size they were read at).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import skimage.data
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

import weights
from core.errors import UserError
from core.images import load_image, to_tensor
from core.runtime import inference_dtype, pick_device
from core.visualize.layers import layer_catalog, layer_outputs, pytorch_view
from core.visualize.receptive_field import ReceptiveField

#: The app's default image set: scikit-image's bundled sample pictures (BSD-licensed, redistributable).
SAMPLE_SET = "skimage"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: A page sheet (:func:`page_sheet`): units per row, white gap between units, height of the caption band.
SHEET_COLUMNS = 3
SHEET_GAP = 10
SHEET_CAPTION = 18


def default_index_dir() -> Path:
    return Path(os.environ.get("CVHUB_INDEX_DIR") or Path.home() / ".cache" / "cvhub" / "index")


# --------------------------------------------------------------------------- image sets


def list_images(source: str) -> list[str]:
    """Names of the images of ``source``: ``"skimage"`` or a folder (searched recursively, sorted)."""
    root = image_root(source)
    if not root.is_dir():
        raise UserError(f"The image folder {source} does not exist.")
    names = sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if source == SAMPLE_SET:  # the bundled files that are photographs or drawings, not test blobs
        names = [n for n in names if not n.startswith(("chessboard_GRAY", "motorcycle_right", "multipage"))]
    if not names:
        raise UserError(f"The folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return names


def image_root(source: str) -> Path:
    if source == SAMPLE_SET:
        return Path(skimage.data.__file__).parent
    return Path(source).expanduser().resolve()


def set_tag(source: str) -> str:
    """A folder-name-safe tag for an image set: ``skimage`` or ``<folder>-<hash of its path>``."""
    if source == SAMPLE_SET:
        return SAMPLE_SET
    root = image_root(source)
    return f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


@functools.lru_cache(maxsize=160)
def read_set_image(source: str, name: str, max_side: int) -> Image.Image:
    """One image of a set as RGB, at most ``max_side`` on its longer side: the same pixels at
    index time and at query time. Cached: a page of 81 patches reads each image once."""
    return load_image(image_root(source) / name, max_side=max_side, min_side=8, what=f"image {name}").image


# --------------------------------------------------------------------------- the top-k update


@dataclass
class TopUnits:
    """The ``k`` strongest responses of each of C units: every array is C x n (n <= k), best first."""

    value: torch.Tensor
    image: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor


def update_top(acts: torch.Tensor, image_ids: torch.Tensor, best: TopUnits | None, k: int = 9,
               per_image: int = 1) -> TopUnits:
    """Merge a batch's activations BxCxhxw (images ``image_ids``, B) into the running top-``k``.

    Each image contributes its ``per_image`` strongest positions per unit (peaks at least one
    unit apart are not enforced: with ``per_image=1`` every patch comes from another image).
    """
    b, c, h, w = acts.shape
    flat = acts.detach().float().flatten(2)  # B x C x hw
    n = min(per_image, h * w)
    v, idx = flat.topk(n, dim=2)  # B x C x n
    v = v.permute(1, 0, 2).reshape(c, b * n)
    idx = idx.permute(1, 0, 2).reshape(c, b * n)
    img = image_ids.to(acts.device).view(1, b, 1).expand(c, b, n).reshape(c, b * n)
    cand = TopUnits(v, img, idx // w, idx % w)
    if best is not None:
        cand = TopUnits(*(torch.cat([old, new], dim=1) for old, new in zip(
            (best.value, best.image, best.y, best.x), (cand.value, cand.image, cand.y, cand.x))))
    keep = cand.value.topk(min(k, cand.value.shape[1]), dim=1).indices
    return TopUnits(*(t.gather(1, keep) for t in (cand.value, cand.image, cand.y, cand.x)))


# --------------------------------------------------------------------------- the index


@dataclass
class PatchIndex:
    """The top responses of every unit of one layer over one image set (see the module docstring)."""

    model: str
    layer: str
    rf: ReceptiveField
    source: str
    names: list[str]
    max_side: int
    value: np.ndarray  # units x k, float32
    image: np.ndarray  # units x k, int32 index into names
    y: np.ndarray  # units x k, int32, unit row in the layer's map
    x: np.ndarray
    info: dict = field(default_factory=dict)  # build time, device, ... (for the README and bench)

    @property
    def units(self) -> int:
        return int(self.value.shape[0])

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = dict(model=self.model, layer=self.layer, field=vars(self.rf), source=self.source,
                      names=self.names, max_side=self.max_side, info=self.info)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, header=np.array(json.dumps(header)), value=self.value.astype(np.float32),
                            image=self.image.astype(np.int32), y=self.y.astype(np.int32), x=self.x.astype(np.int32))
        os.replace(tmp, path)  # readers never see half a file
        return path

    @classmethod
    def load(cls, path: Path) -> "PatchIndex":
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            return cls(model=header["model"], layer=header["layer"], rf=ReceptiveField(**header["field"]),
                       source=header["source"], names=header["names"], max_side=header["max_side"],
                       value=z["value"], image=z["image"], y=z["y"], x=z["x"], info=header.get("info", {}))

    def patches(self, unit: int, size: int = 64) -> list[tuple[Image.Image, float, str]]:
        """The unit's patches, strongest first: (``size`` x ``size`` RGB patch, activation, image name).

        A patch is the unit's receptive field; where it reaches past the image border (the
        layers' zero padding) it is black.
        """
        if not 0 <= unit < self.units:
            raise UserError(f"Layer {self.layer} has units 0 to {self.units - 1}; unit {unit} does not exist.")
        out = []
        for j in range(self.value.shape[1]):
            name = self.names[int(self.image[unit, j])]
            im = read_set_image(self.source, name, self.max_side)
            patch = im.crop(self.rf.box(int(self.y[unit, j]), int(self.x[unit, j])))
            # Small fields (3x3 in layer 1) are enlarged as crisp squares, large ones smoothly.
            resample = Image.Resampling.NEAREST if patch.width < size else Image.Resampling.BILINEAR
            out.append((patch.resize((size, size), resample), float(self.value[unit, j]), name))
        return out

    def prefetch(self, units: Iterable[int], workers: int = 4) -> None:
        """Read the images the patches of ``units`` come from, several at once.

        Decoding dominates a cold answer (a page of 9 units may need 81 different frames) and
        PIL releases the GIL while decoding, so threads overlap it.
        """
        ids = sorted({int(i) for u in units if 0 <= u < self.units for i in self.image[u]})
        jobs = [(self.source, self.names[i], self.max_side) for i in ids]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda job: read_set_image(*job), jobs))

    def unit_grid(self, unit: int, size: int = 64, pad: int = 2) -> Image.Image:
        """The unit's nine (k) patches as one 3x3 picture, strongest top-left, row by row."""
        patches = self.patches(unit, size)
        cols = int(np.ceil(np.sqrt(len(patches))))
        rows = int(np.ceil(len(patches) / cols))
        grid = Image.new("RGB", (cols * (size + pad) + pad, rows * (size + pad) + pad), (255, 255, 255))
        for i, (patch, _, _) in enumerate(patches):
            r, c = divmod(i, cols)
            grid.paste(patch, (pad + c * (size + pad), pad + r * (size + pad)))
        return grid


def _sheet_cell(index: PatchIndex, size: int, pad: int) -> tuple[int, int]:
    """Width and height of one unit's place on a sheet: its grid of ``size``-px patches, then its caption."""
    per_row = int(np.ceil(np.sqrt(index.value.shape[1])))  # as in unit_grid: 9 patches -> 3 x 3
    side = per_row * (size + pad) + pad
    return side + SHEET_GAP, side + SHEET_CAPTION + SHEET_GAP


def page_sheet(index: PatchIndex, units, size: int = 48, pad: int = 2) -> Image.Image:
    """A page of units as one picture: each unit's :meth:`PatchIndex.unit_grid` captioned "unit N", three to a row
    (the lecture's 9 x 9 figure). One picture scales down to any screen whole, where a gallery of nine tiles
    scrolled inside its box; :func:`sheet_unit` tells which unit a click on it hit."""
    units = list(units)
    cell_w, cell_h = _sheet_cell(index, size, pad)
    rows = -(-len(units) // SHEET_COLUMNS)
    columns = min(len(units), SHEET_COLUMNS)
    sheet = Image.new("RGB", (columns * cell_w - SHEET_GAP, rows * cell_h - SHEET_GAP), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=SHEET_CAPTION - 4)
    for i, unit in enumerate(units):
        r, c = divmod(i, SHEET_COLUMNS)
        grid = index.unit_grid(unit, size, pad)
        sheet.paste(grid, (c * cell_w, r * cell_h))
        draw.text((c * cell_w + grid.width / 2, r * cell_h + grid.height + 1), f"unit {unit}", fill=(40, 40, 40),
                  font=font, anchor="ma")
    return sheet


def sheet_unit(index: PatchIndex, units, x: float, y: float, size: int = 48, pad: int = 2) -> int | None:
    """The unit of ``units`` whose place on their :func:`page_sheet` holds pixel (x, y), or None (off the page)."""
    units = list(units)
    cell_w, cell_h = _sheet_cell(index, size, pad)
    c, r = int(x // cell_w), int(y // cell_h)
    i = r * SHEET_COLUMNS + c
    return units[i] if 0 <= x and 0 <= y and c < SHEET_COLUMNS and i < len(units) else None


def index_path(model: str, layer: str, source: str, index_dir: Path | None = None) -> Path:
    return Path(index_dir or default_index_dir()) / model / set_tag(source) / f"{layer}.npz"


def find_index(model: str, layer: str, index_dir: Path | None = None) -> Path | None:
    """The newest index of ``model``/``layer`` over any image set, or None."""
    root = Path(index_dir or default_index_dir()) / model
    found = sorted(root.glob(f"*/{layer}.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[0] if found else None


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float) -> PatchIndex:
    return PatchIndex.load(Path(path))


def load_index(path: Path) -> PatchIndex:
    """:meth:`PatchIndex.load`, cached until the file changes (the panel asks many times)."""
    return _load_cached(str(path), path.stat().st_mtime)


# --------------------------------------------------------------------------- building


def _batches(source: str, names: list[str], max_side: int, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Consecutive images of equal size stacked into batches (CamVid: all 480x360)."""
    ids: list[int] = []
    tensors: list[torch.Tensor] = []
    for i, name in enumerate(names):
        t = to_tensor(load_image(image_root(source) / name, max_side=max_side, min_side=8, what=name).image)
        if tensors and (t.shape != tensors[0].shape or len(tensors) == batch_size):
            yield ids, torch.stack(tensors)
            ids, tensors = [], []
        ids.append(i)
        tensors.append(t)
    if tensors:
        yield ids, torch.stack(tensors)


def scan(model: nn.Module, normalize, layer_paths: list[str], batches: Iterable[tuple[list[int], torch.Tensor]],
         *, k: int = 9, per_image: int = 1, device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> dict[str, TopUnits]:
    """Run ``model`` over image batches (ids, Bx3xHxW in [0, 1]) -> {layer path: top-``k`` per unit}.

    ``normalize`` turns RGB in [0, 1] into the model's input (``record.normalize``).
    """
    best: dict[str, TopUnits | None] = {p: None for p in layer_paths}
    with torch.inference_mode():
        for ids, x in batches:
            x = normalize(x.to(device)).to(dtype)
            outs = layer_outputs(model, layer_paths, x)
            id_tensor = torch.tensor(ids, device=x.device)
            for p in layer_paths:
                best[p] = update_top(outs[p], id_tensor, best[p], k=k, per_image=per_image)
    return {p: t for p, t in best.items()}


def build_index(model_name: str, layers: list[str], source: str = SAMPLE_SET, *, index_dir: Path | None = None,
                max_side: int = 512, batch_size: int = 8, k: int = 9, per_image: int = 1,
                device: torch.device | str | None = None, model: nn.Module | None = None) -> dict[str, Path]:
    """Scan image set ``source`` with registered model ``model_name`` and save one index per layer.

    ``layers`` are display names (``conv1_1``) from :func:`core.visualize.layers.layer_catalog`.
    Returns {layer: index file}. One pass over the images serves all layers.
    """
    catalog = layer_catalog(model_name)
    unknown = [name for name in layers if name not in catalog]
    if unknown:
        raise UserError(f"The model '{model_name}' has no layer {unknown[0]}; it has {', '.join(catalog)}.")
    device = torch.device(device) if device is not None else pick_device()
    dtype = inference_dtype(device)
    record = weights.get_record(model_name)
    if model is None:  # the app's cached copy when the device is the configured one
        model = weights.load(model_name) if device == pick_device() else weights.create(model_name, device=device)
    model = pytorch_view(model).to(device=device, dtype=dtype)
    names = list_images(source)
    paths = [catalog[name][0] for name in layers]
    started = time.perf_counter()
    tops = scan(model, record.normalize, paths, _batches(source, names, max_side, batch_size),
                k=k, per_image=per_image, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    out = {}
    for name, path in zip(layers, paths):
        top = tops[path]
        index = PatchIndex(
            model=model_name, layer=name, rf=catalog[name][1],
            source=SAMPLE_SET if source == SAMPLE_SET else str(image_root(source)),
            names=names, max_side=max_side,
            value=top.value.cpu().numpy(), image=top.image.cpu().numpy(), y=top.y.cpu().numpy(),
            x=top.x.cpu().numpy(),
            info=dict(images=len(names), seconds=round(seconds, 2), device=str(device), layers_in_pass=len(layers)),
        )
        out[name] = index.save(index_path(model_name, name, source, index_dir))
    return out
