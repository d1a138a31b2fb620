"""Every upload becomes clean 8-bit RGB, or one sentence that says what was wrong."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError
from core.images import MAX_PIXELS, load_image


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size but holds almost no data: a decompression bomb's calling card."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_modes_become_rgb_with_the_right_colours():
    gray16 = Image.fromarray(np.full((40, 40), 65535, np.uint16))
    assert gray16.mode.startswith("I;16")
    cases = {
        "L": (Image.new("L", (40, 40), 200), (200, 200, 200)),
        "I;16 white": (gray16, (255, 255, 255)),
        "RGBA transparent over white": (Image.new("RGBA", (40, 40), (255, 0, 0, 0)), (255, 255, 255)),
        "RGBA opaque": (Image.new("RGBA", (40, 40), (10, 20, 30, 255)), (10, 20, 30)),
        "LA": (Image.new("LA", (40, 40), (0, 255)), (0, 0, 0)),
        "CMYK pure cyan": (Image.new("CMYK", (40, 40), (255, 0, 0, 0)), (0, 255, 255)),
        "F in [0,1]": (Image.fromarray(np.full((40, 40), 0.5, np.float32)), (128, 128, 128)),
    }
    for name, (im, rgb) in cases.items():
        out = load_image(_save(im, "TIFF")).image
        assert out.mode == "RGB", name
        assert out.getpixel((5, 5)) == rgb, name


def test_palette_with_transparency_and_32bit_png(shared):
    p = Image.new("P", (40, 40), 1)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p.info["transparency"] = 0
    assert load_image(_save(p, "PNG")).image.getpixel((0, 0)) == (0, 255, 0)
    face = load_image(shared / "data/faces/odd/32bit.png")
    assert face.image.mode == "RGB" and min(face.image.size) >= 32


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (60, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = load_image(_save(im, "JPEG", exif=exif.tobytes())).image
    assert out.size == (40, 60)


def test_animated_gif_uses_first_frame_and_says_so():
    frames = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(data)
    assert loaded.image.getpixel((1, 1))[0] > 200
    assert "first frame" in loaded.note


def test_big_photo_is_downscaled_with_a_note():
    loaded = load_image(_save(Image.new("RGB", (3000, 1000)), "PNG"), max_side=1024)
    assert loaded.image.size == (1024, 341)
    assert "downscaled from 3000x1000 to 1024x341" in loaded.note


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is a text file, not a picture", "could not be read as an image"),
        (_save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8)), "JPEG")[:20000],
         "truncated or corrupt"),
        (_save(Image.new("RGB", (20, 200)), "PNG"), "only 20x200 pixels"),
        (_png_header_only(20000, 20000), "too large to open safely"),
        (b"", "could not be read as an image"),
    ],
    ids=["not-an-image", "truncated", "tiny", "decompression-bomb", "empty"],
)
def test_bad_files_get_one_sentence(data, message):
    with pytest.raises(UserError, match=message) as info:
        load_image(data, what="photo")
    text = str(info.value)
    assert text.count(". ") == 0 and text.endswith("."), "one sentence"


def test_missing_upload_and_pixel_limit_constant():
    with pytest.raises(UserError, match="Please upload a photo"):
        load_image(None, what="photo")
    assert 20000 * 20000 > MAX_PIXELS > 50_000_000  # a 50 MP camera photo still opens
