"""Every upload becomes clean 8-bit RGB, or one sentence that says what was wrong."""

import io
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import images
from core.errors import UserError
from core.images import MAX_DECODE_PIXELS, MAX_PIXELS, load_image


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
        (b"", "could not be read as an image, since the file is empty"),
        (_save(Image.new("RGB", (40, 20000)), "PNG"), "too elongated .* at most 64 times its short side"),
        (_png_header_only(8000, 7000), "8000x7000 PNG of 56 million pixels, which is too large to open safely"),
        (_save(Image.fromarray(np.full((40, 40), np.nan, np.float32)), "TIFF"), "no finite pixel values"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF document"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"/>', "SVG drawing"),
    ],
    ids=["not-an-image", "truncated", "tiny", "decompression-bomb", "empty", "thin-after-downscale",
         "png-over-the-full-decode-limit", "all-nan", "pdf", "svg"],
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


def test_thin_images_are_judged_at_the_size_the_network_sees():
    assert load_image(_save(Image.new("RGB", (40, 2000)), "PNG")).image.size == (40, 2000)  # no downscale: fine
    with pytest.raises(UserError, match=r"would be only 20 pixels across.* at most 32 times its short side"):
        load_image(_save(Image.new("RGB", (40, 2000)), "PNG"), max_side=1024)
    assert load_image(_save(Image.new("RGB", (64, 2048)), "PNG"), max_side=1024).image.size == (32, 1024)


def test_float_images_map_nan_and_inf_to_the_finite_range_with_a_note():
    values = np.linspace(-5.0, 5.0, 40 * 40, dtype=np.float32).reshape(40, 40)
    values[0, :3] = [np.nan, np.inf, -np.inf]
    loaded = load_image(_save(Image.fromarray(values), "TIFF"))
    grey = np.asarray(loaded.image)[..., 0]
    assert list(grey[0, :3]) == [0, 255, 0]  # NaN -> lowest, +inf -> highest, -inf -> lowest finite
    assert grey[-1, -1] == 255 and grey[0, 3] == 0  # -5..5 stretched to 0..255, not clipped at 0
    assert "had 3 non-finite pixels (NaN or infinity)" in loaded.note
    in_255 = Image.fromarray(np.full((40, 40), 100.0, np.float32))
    assert load_image(_save(in_255, "TIFF")).image.getpixel((0, 0)) == (100, 100, 100)
    negative_ints = Image.fromarray(np.arange(-800, 800, dtype=np.int32).reshape(40, 40))
    stretched = np.asarray(load_image(_save(negative_ints, "TIFF")).image)[..., 0]
    assert stretched.min() == 0 and stretched.max() == 255
    array = np.zeros((40, 40, 3))
    array[5, 5] = np.nan
    assert "had 1 non-finite pixel (NaN" in load_image(array).note  # a pixel, not 3 channel values


def test_multipage_tiff_uses_the_first_page_and_tiff_png_orientation_is_applied():
    pages = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    loaded = load_image(_save(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert loaded.image.getpixel((1, 1)) == (255, 0, 0) and "3 pages; the first page is used" in loaded.note
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt in ("TIFF", "PNG", "WEBP"):
        loaded = load_image(_save(Image.new("RGB", (3000, 200)), fmt, exif=exif.tobytes()), max_side=1000)
        assert loaded.image.size == (67, 1000) and loaded.original_size == (200, 3000), fmt


def test_big_decodes_take_turns_on_the_large_decode_threads(monkeypatch):
    threads = []
    decode = images._decode
    monkeypatch.setattr(images, "_decode", lambda *args: (threads.append(threading.current_thread().name),
                                                          decode(*args))[1])
    progressive = _save(Image.new("RGB", (5000, 3400), (200, 30, 30)), "JPEG", progressive=True)
    assert load_image(progressive).image.size == (2048, 1393)  # drafted, but its coefficients are full size
    assert load_image(_save(Image.new("RGB", (300, 200)), "PNG")).image.size == (300, 200)
    assert threads[0].startswith("large-image-decode") and not threads[1].startswith("large-image-decode")


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory):
    """A 12000x8000 (96 MP) JPEG, written once for the tests that need it."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.new("RGB", (12000, 8000), (10, 200, 30)).save(path)
    return path


def test_huge_jpeg_is_drafted_and_the_note_gives_its_true_size(huge_jpeg):
    loaded = load_image(huge_jpeg)
    assert loaded.image.size == (2048, 1365) and loaded.original_size == (12000, 8000)
    assert "downscaled from 12000x8000 to 2048x1365" in loaded.note
    assert 12000 * 8000 > MAX_DECODE_PIXELS  # the same picture as a PNG is refused before decoding


def test_transparent_pixels_do_not_darken_a_reduced_image():
    rgba = np.zeros((1200, 1200, 4), np.uint8)  # transparent black ...
    rgba[:, ::2] = (255, 255, 255, 255)  # ... between opaque white columns
    out = load_image(_save(Image.fromarray(rgba), "PNG"), max_side=200).image
    assert min(out.getpixel((100, 100))) >= 250  # premultiplied averaging: white over white stays white


def test_many_big_concurrent_uploads_stay_within_memory(tmp_path, huge_jpeg):
    """Eight 12000x8000 JPEGs and six 42 MP RGBA PNGs at once: JPEG is drafted, PNG decodes take turns."""
    Image.new("RGBA", (7000, 6000), (30, 60, 90, 100)).save(tmp_path / "big.png", compress_level=1)
    probe = (
        "import resource, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from core.images import load_image\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    sizes = list(pool.map(lambda p: load_image(p).image.size, sys.argv[1:2] * 8 + sys.argv[2:3] * 6))\n"
        "print(sizes[0], sizes[-1], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", probe, str(huge_jpeg), str(tmp_path / "big.png")],
                         cwd=repo, capture_output=True, text=True, timeout=300, check=True).stdout.split()
    assert out[:4] == ["(2048,", "1365)", "(2048,", "1755)"]
    # Unbounded, the six PNG decodes alone take about 2 GB (4 bytes a pixel, plus the premultiplied copy).
    assert int(out[4]) < 1300, f"peak memory grew by {out[4]} MB"
