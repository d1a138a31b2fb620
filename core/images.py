"""Turn whatever a user uploads into a clean 8-bit RGB image, or a one-sentence refusal.

Every panel goes through :func:`load_image`, so odd files are handled once: EXIF
orientation, the many PIL modes (L, LA, P, RGBA, CMYK, I;16, I, F), the first frame of an
animation or page of a TIFF, decompression bombs, huge photos, tiny and very thin images.

Memory: a JPEG is decoded at 1/2..1/8 scale (``draft``) when it is much larger than needed;
every other format is decoded in full, so it has a lower pixel limit (:data:`MAX_DECODE_PIXELS`).
Decodes above :data:`LARGE_DECODE_PIXELS` (and big progressive JPEGs, which hold the whole
picture's coefficients even in draft) run on :data:`LARGE_DECODE_SLOTS` dedicated threads, one
per slot, and are shrunk by an integer factor (``Image.reduce``, cheap) before the final LANCZOS resize.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.errors import UserError

#: Refuse anything larger than this before decoding it (a 100 MP photo is still fine).
MAX_PIXELS = 120_000_000
#: Formats other than JPEG are decoded at full size (4-8 bytes a pixel), so they have a lower limit.
MAX_DECODE_PIXELS = 50_000_000
#: Decodes above this many pixels take one of the process's few large-decode slots.
LARGE_DECODE_PIXELS = 16_000_000
#: How many large decodes may run at once in one process (the others wait their turn).
LARGE_DECODE_SLOTS = 2
#: Smallest side we accept: below this no network in the hub sees anything useful.
MIN_SIDE = 32
#: Default longest side after loading; panels may ask for less.
DEFAULT_MAX_SIDE = 2048

#: What uploads may be: common picture formats only (no EPS, which PIL would hand to Ghostscript).
_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "ICO", "TGA", "PPM", "PCX", "SGI", "QOI")
#: Formats PIL can decode at a reduced scale (``Image.draft``); MPO is a JPEG with extra pictures.
_DRAFT_FORMATS = ("JPEG", "MPO")
_large_decoder = ThreadPoolExecutor(LARGE_DECODE_SLOTS, thread_name_prefix="large-image-decode")

# PIL warns at MAX_IMAGE_PIXELS and raises at twice that; we check the size ourselves
# before decoding, so lift PIL's own limit just above ours to get our message, not PIL's.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# PIL's chatter about user files ("possibly corrupt EXIF", bomb-size warnings) is not the server's problem.
# A module-level filter, because warnings.catch_warnings() is not thread-safe and handlers run in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

#: EXIF orientation -> the transpose that displays the picture upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_NUMERIC_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")

# PIL raises many kinds of exceptions on broken files, depending on the format plugin.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error, zlib.error)

_FORMATS_WE_READ = "please upload a PNG, JPEG, WebP, GIF, BMP or TIFF file"


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
    """Open ``source`` (path, bytes, PIL image or HxW[xC] array) as 8-bit RGB, at most ``max_side`` px long.

    Raises :class:`UserError` with one sentence for anything that is not a usable image, including
    one whose short side would be under ``min_side`` px once its long side is scaled to ``max_side``.
    ``what`` names the input in messages ("content image", "photo 1", ...).
    """
    if source is None:
        raise UserError(f"Please upload {_article(what)} {what}.")
    notes: list[str] = []
    if isinstance(source, np.ndarray):
        source = _array_to_pil(source, what, notes)
    im = source if isinstance(source, Image.Image) else _open(source, what)
    return _normalise(im, notes, max_side=max_side, min_side=min_side, what=what)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _open(source, what: str) -> Image.Image:
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source)
        im = Image.open(fp, formats=_FORMATS)
    except FileNotFoundError:
        raise UserError(f"The {what} file was not found; please upload it again.") from None
    except Image.DecompressionBombError as exc:
        raise _too_big(what) from exc
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        kind = _sniff(source)
        because = f", since {kind}" if kind else ""
        raise UserError(f"The {what} could not be read as an image{because}; {_FORMATS_WE_READ}.") from exc
    return im


def _sniff(source) -> str:
    """What a file that PIL cannot open looks like, in words ("" if nothing recognisable)."""
    try:
        if isinstance(source, (bytes, bytearray)):
            head = bytes(source[:512])
        else:
            with open(source, "rb") as f:
                head = f.read(512)
    except OSError:
        return ""
    text = head.lstrip().lower()
    if not head:
        return "the file is empty"
    if head.startswith(b"%PDF"):
        return "it is a PDF document (export the page as PNG or JPEG)"
    if b"<svg" in text or (text.startswith(b"<?xml") and b"svg" in text):
        return "it is an SVG drawing (export it as PNG)"
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        return "it is a web page (HTML), not a picture"
    if head.startswith(b"PK\x03\x04"):
        return "it is a ZIP archive (unpack it and upload one picture)"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "it is a HEIC photo, which this server cannot decode (export it as JPEG)"
    return ""


def _too_big(what: str) -> UserError:
    return UserError(
        f"The {what} has more than {MAX_PIXELS // 1_000_000} million pixels, which is too large to open safely; "
        "please upload a smaller picture."
    )


def _target_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled so its longest side is at most ``max_side`` (unchanged if it already is)."""
    w, h = size
    if max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _check_size(im: Image.Image, *, max_side: int, min_side: int, what: str) -> tuple[int, int]:
    """Refuse, before decoding, what is too large to decode or too small (or thin) to use; the target size."""
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise _too_big(what)
    full_decode = im.format is not None and im.format not in _DRAFT_FORMATS
    if full_decode and w * h > MAX_DECODE_PIXELS:
        raise UserError(
            f"The {what} is a {w}x{h} {im.format} of {w * h / 1e6:.0f} million pixels, which is too large to open "
            f"safely (the limit is {MAX_DECODE_PIXELS // 1_000_000} million for {im.format} and "
            f"{MAX_PIXELS // 1_000_000} million for JPEG); please scale it down or save it as a JPEG."
        )
    if min(w, h) < min_side:
        raise UserError(
            f"The {what} is only {w}x{h} pixels; please upload one at least {min_side} pixels on each side."
        )
    target = _target_size((w, h), max_side)
    if min(target) < min_side:
        raise UserError(
            f"The {what} is too elongated ({w}x{h} pixels): scaled to {max_side} pixels on its long side it would be "
            f"only {min(target)} pixels across, and the networks need at least {min_side}; please crop it so that "
            f"its long side is at most {max_side // min_side} times its short side."
        )
    return target


def _normalise(im: Image.Image, notes: list[str], *, max_side: int, min_side: int, what: str) -> LoadedImage:
    try:
        frames = getattr(im, "n_frames", 1)  # reads every frame's header: a broken file can fail here
        if frames > 1:
            im.seek(0)
            if im.format == "TIFF":
                notes.append(f"The {what} has {frames} pages; the first page is used.")
            elif im.format != "MPO":  # a camera's MPO holds a second, smaller view: not news to the user
                notes.append(f"The {what} is animated; the first frame is used.")
        target = _check_size(im, max_side=max_side, min_side=min_side, what=what)
        full_size = im.size
        if im.format in _DRAFT_FORMATS and target != im.size:
            # JPEG decodes at 1/2, 1/4, 1/8 scale directly, never below the target: a 100 MP photo loads small.
            im.draft("RGB", target)
        # A progressive JPEG keeps every coefficient of the full picture while decoding, even in draft.
        work = full_size if im.info.get("progressive") else im.size
        if work[0] * work[1] > LARGE_DECODE_PIXELS:
            # Few at a time, and always on the same few threads: each thread's malloc arena keeps what a
            # decode freed, so big decodes spread over many request threads would pile up memory.
            im, original_size = _large_decoder.submit(_decode, im, full_size, max_side, what, notes).result()
        else:
            im, original_size = _decode(im, full_size, max_side, what, notes)
    except UserError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_big(what) from exc
    except MemoryError as exc:
        raise UserError(f"The {what} is too large for the memory this server has free; "
                        "please try a smaller picture or try again later.") from exc
    except _DECODE_ERRORS as exc:
        raise UserError(
            f"The {what} file is truncated or corrupt; please upload it again or try another file."
        ) from exc
    if im.size != original_size:
        notes.append(f"The {what} was downscaled from {original_size[0]}x{original_size[1]} "
                     f"to {im.size[0]}x{im.size[1]} pixels.")
    return LoadedImage(im, notes, original_size)


def _decode(
    im: Image.Image, full_size: tuple[int, int], max_side: int, what: str, notes: list[str]
) -> tuple[Image.Image, tuple[int, int]]:
    """An opened image (``full_size`` before any draft) -> RGB, upright, at most ``max_side`` long; its upright size."""
    w, h = full_size
    decoded = im.size
    im.load()
    swapped = im.size != decoded  # TIFF applies its own EXIF orientation while loading
    orientation = _orientation(im)
    im = _standard_mode(im, what, notes)
    reduced = _target_size(im.size, max_side)
    factor = min(im.size[0] // reduced[0], im.size[1] // reduced[1])
    if factor >= 2:
        # Box-average by an integer factor first: cheap, and LANCZOS then works on a small image.
        im = _premultiplied(im).reduce(factor)
    if orientation in _ORIENTATION:
        im = im.transpose(_ORIENTATION[orientation])
        swapped ^= orientation in (5, 6, 7, 8)
    im = _to_rgb(im, what)
    final = _target_size(im.size, max_side)
    if final != im.size:
        im = im.resize(final, Image.Resampling.LANCZOS)
    return im, ((h, w) if swapped else (w, h))


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag still to apply (1 = upright); TIFF has applied and dropped it while loading."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a corrupt EXIF block only costs the rotation, not the picture
        return 1


def _standard_mode(im: Image.Image, what: str, notes: list[str]) -> Image.Image:
    """Modes that cannot be box-averaged become ones that can: numbers -> L, palette -> RGB(A), 1 -> L."""
    if im.mode in _NUMERIC_MODES:
        return Image.fromarray(_to_uint8(np.asarray(im), what, notes))
    if im.mode in ("P", "PA"):
        return im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    if im.mode in ("L", "RGB") and "transparency" in im.info:
        return im.convert("RGBA")  # one colour marked transparent (PNG tRNS)
    if im.mode == "1":
        return im.convert("L")
    return im


def _premultiplied(im: Image.Image) -> Image.Image:
    """Alpha images are averaged premultiplied, so transparent pixels' hidden colour does not bleed in."""
    return im.convert(im.mode[:-1] + "a") if im.mode in ("RGBA", "LA") else im


def _to_rgb(im: Image.Image, what: str = "image") -> Image.Image:
    """Any mode :func:`_standard_mode` leaves (or a premultiplied one) to 8-bit RGB; transparency over white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBa", "La"):
        im = im.convert(im.mode.upper())
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return im.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV, RGBX
    except ValueError:
        raise UserError(f"The {what} uses a pixel format ({im.mode}) that cannot be shown in colour; "
                        "please save it as an 8-bit PNG or JPEG.") from None


def _to_uint8(a: np.ndarray, what: str = "image", notes: list[str] | None = None) -> np.ndarray:
    """A high-bit-depth or float HxW[xC] array -> uint8 0..255, channels sharing one scale.

    Unsigned 16-bit uses its full range 0..65535; floats in [0, 1] or [0, 255] keep their meaning; other ranges
    (negative values, HDR) are stretched min..max. NaN and -inf become the lowest finite value, +inf the highest,
    with a note in ``notes``; an array with no finite value at all is refused.
    """
    work = np.float64 if a.dtype.itemsize > 4 else np.float32
    x = np.array(a, dtype=work)  # a writeable copy; the input stays as it was
    integer = a.dtype.kind in "iu"
    if not integer:
        finite = np.isfinite(x)
        bad = finite.size - int(np.count_nonzero(finite))
        if bad:
            if bad == finite.size:
                raise UserError(f"The {what} holds no finite pixel values (every value is NaN or infinite); "
                                "please upload an image with numbers in its pixels.")
            high = np.isposinf(x)
            x[~finite] = np.nan
            lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
            x[np.isnan(x)] = lo
            x[high] = hi
            pixels = bad if x.ndim == 2 else int(np.count_nonzero(~finite.all(axis=-1)))
            if notes is not None:
                notes.append(f"The {what} had {pixels} non-finite pixel{'s' if pixels != 1 else ''} (NaN or "
                             "infinity), set to its darkest or brightest finite value.")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if (a.dtype.kind == "u" and a.dtype.itemsize == 2) or (integer and lo >= 0 and 255 < hi <= 65535):
        x *= 255.0 / 65535.0  # 16-bit data: full scale is 65535
    elif not integer and lo >= 0 and hi <= 1:
        x *= 255.0  # float images in [0, 1]
    elif lo >= 0 and hi <= 255:
        pass  # already 0..255
    elif hi > lo:
        x -= lo  # any other range: stretch min..max
        x *= 255.0 / (hi - lo)
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def _array_to_pil(a: np.ndarray, what: str = "image", notes: list[str] | None = None) -> Image.Image:
    if a.ndim == 2:
        return Image.fromarray(a if a.dtype == np.uint8 else _to_uint8(a, what, notes))
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.dtype != np.uint8:
            a = _to_uint8(a, what, notes)
        return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
    raise UserError(f"The {what} array must be HxW, HxWx3 or HxWx4.")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor 3xHxW in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor 3xHxW (or 1x3xHxW) in [0, 1] -> PIL RGB image."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)
