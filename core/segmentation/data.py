"""CamVid (SegNet's 480x360 version) in memory, and the training augmentation.

The whole split is read once into uint8 tensors (train: ~250 MB), so an epoch costs no
JPEG decoding; augmentation works on batched tensors: random scale + crop, horizontal flip,
colour jitter. Labels: uint8 class indices, 11 = void (ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.datasets.camvid import TRAIN_PIXEL_COUNTS, VOID
from core.segmentation.shifts import street_augment

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class SegmentationSet:
    """images: Nx3xHxW uint8 RGB; labels: NxHxW uint8 (255/11 = void); names: file stems."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def pair_files(image_dir: Path, label_dir: Path) -> list[tuple[Path, Path]]:
    """Frames and label maps matched by file stem; a frame without its label is an error."""
    labels = {p.stem: p for p in Path(label_dir).iterdir() if p.suffix.lower() == ".png"}
    pairs = []
    for image in sorted(p for p in Path(image_dir).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
        if image.stem not in labels:
            raise FileNotFoundError(f"no label map for {image.name} in {label_dir}")
        pairs.append((image, labels[image.stem]))
    return pairs


def load_pairs(pairs: list[tuple[Path, Path]], size: tuple[int, int] | None = None) -> SegmentationSet:
    """Read frames and labels; ``size`` (H, W) resizes (bilinear frames, nearest labels) while loading."""
    images, labels = [], []
    for image_path, label_path in pairs:
        image = Image.open(image_path).convert("RGB")
        label = Image.open(label_path)
        if size is not None:
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            label = label.resize((size[1], size[0]), Image.Resampling.NEAREST)
        images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
        labels.append(torch.from_numpy(np.asarray(label, dtype=np.uint8).copy()))
    return SegmentationSet(torch.stack(images), torch.stack(labels), [p.stem for p, _ in pairs])


def load_camvid(root: str | Path, split: str, size: tuple[int, int] | None = None,
                limit: int | None = None) -> SegmentationSet:
    """``split`` in train/val/test: frames in ``root/split``, labels in ``root/{split}annot``."""
    root = Path(root)
    pairs = pair_files(root / split, root / f"{split}annot")
    return load_pairs(pairs[:limit] if limit else pairs, size)


def camvid_names(root: str | Path, split: str, limit: int | None = None) -> list[str]:
    """The frame names of a split in :func:`load_camvid`'s order, without reading a frame (for cached features)."""
    root = Path(root)
    names = [image.stem for image, _ in pair_files(root / split, root / f"{split}annot")]
    return names[:limit] if limit else names


def sequence_index(names: list[str], sequence: str) -> tuple[list[int], list[int]]:
    """(indices of the frames not of ``sequence``, indices of its frames); CamVid names a frame
    ``<sequence>_<frame>``, e.g. ``0006R0_f00930``."""
    inside = [i for i, name in enumerate(names) if name.split("_")[0] == sequence]
    if not inside:
        raise ValueError(f"no frame of sequence {sequence!r}")
    held = set(inside)
    return [i for i in range(len(names)) if i not in held], inside


def split_sequence(data: SegmentationSet, sequence: str) -> tuple[SegmentationSet, SegmentationSet]:
    """(frames not of ``sequence``, frames of it)."""

    def subset(index: list[int]) -> SegmentationSet:
        return SegmentationSet(data.images[index], data.labels[index], [data.names[i] for i in index])

    outside, inside = sequence_index(data.names, sequence)
    return subset(outside), subset(inside)


def enet_class_weights(counts=TRAIN_PIXEL_COUNTS, num_classes: int = 11, c: float = 1.02) -> torch.Tensor:
    """ENet's weighting w_c = 1 / ln(c + p_c), p_c = class frequency over labelled pixels.

    Bounded between 1/ln(1+c) and 1/ln(c) (~50): rare classes (Bicyclist, Pole) weigh ~10-40x Road.
    """
    counts = torch.tensor(counts[:num_classes], dtype=torch.float64)
    p = counts / counts.sum()
    return (1.0 / torch.log(c + p)).float()


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    crop: tuple[int, int],
    *,
    scale: tuple[float, float] = (0.75, 1.25),
    base_scale: float = 1.0,
    aspect: tuple[float, float] = (1.0, 1.0),
    street: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 Bx3xHxW + BxHxW -> float Bx3xhxw in [0, 1] + int64 Bxhxw, h x w = ``crop``.

    Per frame: resize by base_scale * U(scale), the width by a further U(aspect) (other cameras' pixel shapes and
    lenses), random crop (void-padded when smaller), horizontal flip with p=0.5, brightness/contrast/saturation
    jitter of +-25 %; ``street`` adds :func:`core.segmentation.shifts.street_augment` (other cities' skies,
    cameras and codecs).
    """
    out_x, out_y = [], []
    g = generator
    for image, label in zip(images, labels):
        s = base_scale * float(torch.empty(1).uniform_(*scale, generator=g))
        a = float(torch.empty(1).uniform_(*aspect, generator=g)) if aspect != (1.0, 1.0) else 1.0
        h, w = max(1, round(image.shape[1] * s)), max(1, round(image.shape[2] * s * a))
        x = F.interpolate(image[None].float() / 255, size=(h, w), mode="bilinear", align_corners=False,
                          antialias=s * min(a, 1) < 1)[0]
        y = F.interpolate(label[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
        ph, pw = max(0, crop[0] - h), max(0, crop[1] - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=0.0)
            y = F.pad(y, (0, pw, 0, ph), value=VOID)
        top = int(torch.randint(0, x.shape[1] - crop[0] + 1, (1,), generator=g))
        left = int(torch.randint(0, x.shape[2] - crop[1] + 1, (1,), generator=g))
        x = x[:, top : top + crop[0], left : left + crop[1]]
        y = y[top : top + crop[0], left : left + crop[1]]
        if float(torch.rand(1, generator=g)) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        x = _colour_jitter(x, g)
        if street:
            x, y = street_augment(x, y, g)
        out_x.append(x)
        out_y.append(y)
    return torch.stack(out_x), torch.stack(out_y)


def _colour_jitter(x: torch.Tensor, g, amount: float = 0.25) -> torch.Tensor:
    b, c, s = (1 + amount * (2 * torch.rand(3, generator=g) - 1)).tolist()
    x = x * b
    mean = x.mean()
    x = (x - mean) * c + mean
    grey = x.mean(0, keepdim=True)
    x = (x - grey) * s + grey
    return x.clamp(0, 1)


def resize_for_model(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Bx3xHxW float -> the working resolution of a model trained at ``scale`` x CamVid size."""
    if math.isclose(scale, 1.0):
        return x
    h, w = round(x.shape[-2] * scale), round(x.shape[-1] * scale)
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=scale < 1)
