"""Turn whatever a user uploads into a clean 8-bit RGB image, or a one-sentence refusal.

Every panel goes through :func:`load_image`, so odd files are handled once: EXIF
orientation, the many PIL modes (L, LA, P, RGBA, CMYK, I;16, I, F), the first frame of an
animation, decompression bombs, huge photos and tiny images.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import UserError

#: Refuse anything larger than this before decoding it (a 100 MP photo is still fine).
MAX_PIXELS = 120_000_000
#: Smallest side we accept: below this no network in the hub sees anything useful.
MIN_SIDE = 32
#: Default longest side after loading; panels may ask for less.
DEFAULT_MAX_SIDE = 2048

# PIL warns at MAX_IMAGE_PIXELS and raises at twice that; we check the size ourselves
# before decoding, so lift PIL's own limit just above ours to get our message, not PIL's.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass
class LoadedImage:
    """An RGB image ready for the models, plus notes on what was changed on the way."""

    image: Image.Image
    notes: list[str] = field(default_factory=list)
    original_size: tuple[int, int] = (0, 0)

    @property
    def note(self) -> str:
        return " ".join(self.notes)


def load_image(
    source: str | os.PathLike | bytes | Image.Image | np.ndarray | None,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    min_side: int = MIN_SIDE,
    what: str = "image",
) -> LoadedImage:
    """Open ``source`` (path, bytes, PIL image or HxW[xC] array) as 8-bit RGB.

    Raises :class:`UserError` with one sentence for anything that is not a usable image.
    ``what`` names the input in messages ("content image", "photo 1", ...).
    """
    if source is None:
        raise UserError(f"Please upload an {what}." if what[0] in "aeiou" else f"Please upload a {what}.")
    if isinstance(source, np.ndarray):
        source = _array_to_pil(source)
    if isinstance(source, Image.Image):
        im = source
    else:
        im = _open(source, what)
    return _normalise(im, max_side=max_side, min_side=min_side, what=what)


def _open(source, what: str) -> Image.Image:
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source)
        im = Image.open(fp)
    except FileNotFoundError:
        raise UserError(f"The {what} file was not found; please upload it again.") from None
    except (Image.DecompressionBombError,) as exc:
        raise _too_big(what) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(
            f"The {what} could not be read as an image; please upload a PNG, JPEG, WebP, GIF, BMP or TIFF file."
        ) from exc
    return im


def _too_big(what: str) -> UserError:
    return UserError(
        f"The {what} has more than {MAX_PIXELS // 1_000_000} million pixels, which is too large to open safely; "
        "please upload a smaller picture."
    )


def _normalise(im: Image.Image, *, max_side: int, min_side: int, what: str) -> LoadedImage:
    notes: list[str] = []
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise _too_big(what)
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
        notes.append(f"The {what} is animated; the first frame is used.")
    try:
        # JPEG can decode at 1/2, 1/4, 1/8 scale directly: a 50 MP photo loads fast.
        if im.format == "JPEG" and max(w, h) > 2 * max_side:
            im.draft("RGB", (max_side, max_side))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's "possibly corrupt EXIF" chatter
            im.load()
            im = ImageOps.exif_transpose(im) or im
    except Image.DecompressionBombError as exc:
        raise _too_big(what) from exc
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise UserError(f"The {what} file is truncated or corrupt; please upload it again or try another file.") from exc
    original_size = im.size
    im = _to_rgb(im)
    if min(im.size) < min_side:
        raise UserError(
            f"The {what} is only {im.size[0]}x{im.size[1]} pixels; please upload one at least {min_side} pixels on each side."
        )
    if max(im.size) > max_side:
        scale = max_side / max(im.size)
        new = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
        notes.append(f"The {what} was downscaled from {original_size[0]}x{original_size[1]} to {new[0]}x{new[1]} pixels.")
        im = im.resize(new, Image.Resampling.LANCZOS)
    return LoadedImage(im, notes, original_size)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparency is composited over white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im))).convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Map a high-bit-depth single-channel array to 0..255 by its type's range."""
    a = a.astype(np.float64)
    if a.size and a.max() <= 1.0 and a.min() >= 0.0:
        top = 1.0  # float images in [0, 1]
    elif a.size and a.max() <= 255:
        top = 255.0
    else:
        top = 65535.0 if a.max() <= 65535 else float(a.max())
    return np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 2:
        return Image.fromarray(a if a.dtype == np.uint8 else _to_uint8(a))
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.dtype != np.uint8:
            a = _to_uint8(a)
        return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
    raise UserError("The image array must be HxW, HxWx3 or HxWx4.")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor 3xHxW in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor 3xHxW (or 1x3xHxW) in [0, 1] -> PIL RGB image."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)
