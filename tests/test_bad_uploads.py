"""A corpus of odd and broken files, each sent through every image-taking endpoint of the running app.

The test writes every file itself (into tmp_path); only the face photo comes from ../shared, where a real
face is needed. For each (file, endpoint) the call either succeeds with a sane result or fails with one clear
sentence (gradio_client's ``AppError``), never the generic "Something went wrong", and the app's log gains no
traceback. Endpoints run in parallel, each one's requests one after the other, so a batched endpoint never
mixes two corpus files in one batch.
"""

from __future__ import annotations

import io
import math
import re
import struct
import time
import zipfile
import zlib
from concurrent.futures import CancelledError, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FACE = Path("data/faces/gallery_and_queries/train/obama/obama.jpg")  # under ../shared
COLOURS = "The photo's colours averaged over 16x16 cells (no model needed)"
NO_FACE = "No face was found"


# ---- files ------------------------------------------------------------------------------------------
def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(pixels: np.ndarray, colour_type: int, *, interlace: bool = False) -> bytes:
    """A PNG written by hand from uint8 or uint16 HxW[xC] pixels: PIL writes neither 16-bit RGB nor Adam7."""
    height, width = pixels.shape[:2]
    depth = 16 if pixels.dtype == np.uint16 else 8
    data = pixels.astype(">u2" if depth == 16 else "u1")
    # Adam7's seven passes as (x0, y0, dx, dy); a plain PNG is one pass over every pixel.
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b"".join(b"\0" + row.tobytes() for x0, y0, dx, dy in (passes if interlace else [(0, 0, 1, 1)])
                   for row in data[y0::dy, x0::dx] if row.size)
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size but holds almost no data: a decompression bomb's calling card."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _chunk(b"IEND", b""))


def _flat_png(width: int, height: int) -> bytes:
    """A real, complete ``width`` x ``height`` RGB PNG of one colour, streamed so it costs little memory."""
    squeeze = zlib.compressobj(1)
    row = b"\0" + bytes([40, 90, 160]) * width
    body = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth colour picture with some texture, small so every model runs fast on it."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 40, (height, width, 3))
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1) + noise
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.png", _save(_photo(), "PNG"))
    return buf.getvalue()


def _float_tiff(values: np.ndarray) -> bytes:
    return _save(Image.fromarray(values.astype(np.float32)), "TIFF")


def _float_with_inf_and_nan() -> bytes:
    values = np.linspace(-5.0, 5.0, 64 * 96).reshape(64, 96)
    values[:4, :4] = np.nan
    values[10, 10:20] = np.inf
    values[20, 10:20] = -np.inf
    return _float_tiff(values)


def _noise_bytes(width: int, height: int, fmt: str) -> bytes:
    rgb = np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8)
    return _save(Image.fromarray(rgb), fmt)


def _palette_with_transparency() -> bytes:
    im = _photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 0
    return _save(im, "PNG", transparency=0)


def _rgba() -> bytes:
    rgba = np.asarray(_photo().convert("RGBA")).copy()
    rgba[:, :32, 3] = 0
    rgba[:, 32:64, 3] = 128
    return _save(Image.fromarray(rgba), "PNG")


def _animated_gif() -> bytes:
    frames = [_photo(seed=k) for k in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    pages = [_photo(seed=k) for k in range(3)]
    return _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _corrupt_exif_jpeg() -> bytes:
    # An APP1 Exif block whose TIFF header points its first IFD far past the end.
    garbage = b"Exif\x00\x00MM\x00\x2a\x7f\xff\xff\xf0" + bytes(range(256)) * 2
    return _save(_photo(), "JPEG", exif=garbage)


def _rotated_face(shared: Path) -> bytes:
    """The face photo stored on its side, with EXIF orientation 6 saying how to turn it upright."""
    upright = Image.open(shared / FACE).convert("RGB")
    return _save(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=_exif(6))


@dataclass
class Case:
    """One file of the corpus and what every endpoint must answer.

    ``refused``: a regex the error must match (None: the file is a usable image). ``refused_by``: endpoints
    that must refuse a file the others accept (a shape that is too thin once scaled to that panel's size).
    Refused files go to every endpoint and slot; usable ones to the fast endpoints, and to the slow ones
    only when ``everywhere`` (one of each size, shape, orientation, transparency and number format).
    """

    name: str
    data: bytes
    refused: str | None = None
    refused_by: dict[str, str] = field(default_factory=dict)
    face: bool = False
    box: list[float] | None = None  # the /default_box answer, which tells the upright size
    everywhere: bool = False  # a usable file the slow endpoints get too (see Endpoint.slow)


def corpus(shared: Path) -> list[Case]:
    unreadable = "could not be read as an image"
    corrupt = "truncated or corrupt"
    png = _save(_photo(), "PNG")
    jpeg = _noise_bytes(200, 150, "JPEG")
    cases = [
        Case("empty.png", b"", "the file is empty"),
        Case("truncated.png", _noise_bytes(120, 90, "PNG")[:4000], corrupt),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], corrupt),
        Case("text-named.png", b"Dear user, this is a plain text file and not a picture.\n" * 20, unreadable),
        Case("random-bytes.jpg", np.random.default_rng(2).bytes(5000), unreadable),
        Case("drawing.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="96" '
             b'height="64"><rect width="96" height="64" fill="red"/></svg>\n', "SVG drawing"),
        Case("page.html", b"<!DOCTYPE html>\n<html><body><img src='cat.jpg'></body></html>\n", "web page"),
        Case("document.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF document"),
        Case("photos.zip", _zip(), "ZIP archive"),
        Case("heic-photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIC photo"),
        Case("bomb.png", _png_header_only(30000, 30000), "too large to open safely"),
        Case("huge-12000x8000.png", _flat_png(12000, 8000), r"12000x8000 PNG .* too large to open safely"),
        Case("one-by-n.png", _save(Image.new("RGB", (1, 500), "red"), "PNG"), r"only 1x500 pixels"),
        Case("n-by-one.png", _save(Image.new("RGB", (500, 1), "red"), "PNG"), r"only 500x1 pixels"),
        Case("tiny-8x8.png", _save(_photo(8, 8), "PNG"), r"only 8x8 pixels"),
        Case("thin-40x20000.png", _save(Image.new("RGB", (40, 20000), "red"), "PNG"), "too elongated"),
        Case("all-nan.tiff", _float_tiff(np.full((64, 96), np.nan)), "no finite pixel values"),
        # Odd but usable files: every endpoint must take them.
        Case("png-named.jpg", png),
        Case("min-side-32x32.png", _save(_photo(32, 32), "PNG"), everywhere=True),
        Case("long-40x1200.png", _save(_photo(1200, 40), "PNG"), everywhere=True,
             # /stylize is sent at its smallest size, 64 px: a 30:1 picture would be 2 px across there
             refused_by={"/activations": "too elongated .* at most 16 times",
                         "/stylize": "too elongated .* at most 2 times"}),
        Case("gray16.png", _png((np.arange(64 * 96).reshape(64, 96) * 10).astype(np.uint16), 0)),
        Case("rgb16.png", _png(np.asarray(_photo()).astype(np.uint16) * 257, 2)),
        Case("interlaced.png", _png(np.asarray(_photo()), 2, interlace=True)),
        Case("float-inf-nan.tiff", _float_with_inf_and_nan(), everywhere=True),
        Case("float-negative.tiff", _float_tiff(np.linspace(-300.0, -100.0, 64 * 96).reshape(64, 96))),
        Case("int32-negative.tiff", _save(Image.fromarray(np.arange(-3000, 3144, dtype=np.int32).reshape(64, 96)),
                                          "TIFF")),
        Case("cmyk.jpg", _save(_photo().convert("CMYK"), "JPEG")),
        Case("palette-transparency.png", _palette_with_transparency()),
        Case("la.png", _save(_photo().convert("LA"), "PNG")),
        Case("rgba.png", _rgba(), everywhere=True),
        Case("one-bit.png", _save(_photo().convert("1"), "PNG")),
        Case("exif-rotated.jpg", _save(_photo(96, 64), "JPEG", exif=_exif(6)), box=[21, 29, 43, 69], everywhere=True),
        Case("animated.gif", _animated_gif()),
        Case("multipage.tiff", _multipage_tiff()),
        Case("photo.webp", _save(_photo(), "WEBP")),
        Case("huge-12000x8000.jpg", _save(Image.new("RGB", (12000, 8000), (90, 140, 60)), "JPEG"), everywhere=True),
        Case("gray.jpg", _save(_photo().convert("L"), "JPEG")),
        Case("progressive.jpg", _save(_photo(), "JPEG", progressive=True)),
        Case("corrupt-exif.jpg", _corrupt_exif_jpeg()),
        Case("icon.ico", _save(_photo(64, 64), "ICO", sizes=[(64, 64)])),
        Case("photo.bmp", _save(_photo(), "BMP")),
        Case("photo.tga", _save(_photo(), "TGA")),
        Case("photo.ppm", _save(_photo(), "PPM")),
        Case("face-exif-rotated.jpg", _rotated_face(shared), face=True, everywhere=True),
    ]
    if features.check("avif"):
        cases.append(Case("photo.avif", _save(_photo(), "AVIF")))
    return cases


# ---- endpoints ----------------------------------------------------------------------------------------
def _files(*values) -> bool:
    return all(isinstance(v, str) and Path(v).is_file() for v in values)


def _box_ok(box) -> bool:
    x1, y1, x2, y2 = box
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in box) and 0 <= x1 < x2 and 0 <= y1 < y2


@dataclass
class Endpoint:
    """How to call one endpoint with a corpus file in one of its image slots, and what a sane answer is."""

    name: str
    call: callable  # (client, upload, face upload) -> result
    sane: callable  # result -> bool
    batched_error: callable = None  # result -> the "⚠ message" a batched handler returns for a failed request
    face: bool = False  # finds faces: a usable picture without one is refused with NO_FACE
    slow: bool = False  # a model of seconds per call on a CPU: usable files only when Case.everywhere
    second_slot: bool = False  # another image slot of an endpoint already tested: refused files and the face

    def takes(self, case: Case) -> bool:
        if case.refused is not None:
            return True
        if self.second_slot:
            return case.face
        return case.everywhere or not self.slow


def endpoints() -> list[Endpoint]:
    def stylize(client, content, style):
        return client.predict(content_upload=content, style_upload=style, style2_upload=None, steps=1, size=64,
                              optimizer="adam", api_name="/stylize")

    def verify(client, photo1, photo2):
        return client.predict(photo1, photo2, 1, 1, 0.36, "dlib", api_name="/verify")

    def triplet(client, anchor, positive, negative):
        return client.predict(anchor, positive, negative, 0.2, "dlib", api_name="/triplet")

    def warn(result):
        return result[2] if isinstance(result[2], str) and result[2].startswith("⚠") else None

    verified = lambda r: len(r[2]) == 2 and "τ" in r[3]  # noqa: E731
    tripled = lambda r: len(r[0]) == 3 and "Loss" in r[1]  # noqa: E731
    return [
        Endpoint("/segment", lambda c, f, _: c.predict(f, "enet-camvid", 0.6, api_name="/segment"),
                 lambda r: _files(r[0]) and "seg-legend" in r[1], warn),
        Endpoint("/default_box", lambda c, f, _: c.predict(f, api_name="/default_box"), _box_ok),
        Endpoint("/roi_pool_vs_align",
                 lambda c, f, _: c.predict(f, 0, 0, 20, 20, COLOURS, 7, 2, api_name="/roi_pool_vs_align"),
                 lambda r: _files(*r[:5]) and "RoI Align" in r[5]),
        Endpoint("/enroll", lambda c, f, _: c.predict("Corpus Person", [f], "dlib", api_name="/enroll"),
                 lambda r: len(r[0]["data"]) >= 1, face=True),
        Endpoint("/identify", lambda c, f, _: c.predict(f, 0.36, "dlib", api_name="/identify"),
                 lambda r: len(r[1]["data"]) >= 1, face=True),
        Endpoint("/compare_segmentation",
                 lambda c, f, _: c.predict(f, ["enet-camvid"], 0.6, api_name="/compare_segmentation"),
                 lambda r: len(r[0]) == 1 and _files(r[0][0]["image"]) and r[1]["data"][0][0] == "enet-camvid",
                 slow=True),
        Endpoint("/instances",
                 lambda c, f, _: c.predict(f, "maskrcnn-vgg19-camvid", 0.5, True, True, True, api_name="/instances"),
                 lambda r: _files(r[0]) and "headers" in r[1], warn, slow=True),
        Endpoint("/activations", lambda c, f, _: c.predict(f, "vgg19-caffe", "conv1_1", 0, api_name="/activations"),
                 lambda r: len(r[0]) > 0 and _files(r[1]), slow=True),
        Endpoint("/stylize content", lambda c, f, face: stylize(c, f, face), lambda r: _files(r[0]), slow=True),
        Endpoint("/stylize style", lambda c, f, face: stylize(c, face, f), lambda r: _files(r[0]), slow=True,
                 second_slot=True),
        Endpoint("/verify photo1", lambda c, f, face: verify(c, f, face), verified, face=True, slow=True),
        Endpoint("/verify photo2", lambda c, f, face: verify(c, face, f), verified, face=True, slow=True,
                 second_slot=True),
        Endpoint("/triplet anchor", lambda c, f, face: triplet(c, f, face, face), tripled, face=True, slow=True),
        Endpoint("/triplet negative", lambda c, f, face: triplet(c, face, face, f), tripled, face=True, slow=True,
                 second_slot=True),
    ]


GENERIC = re.compile(r"Something went wrong|upstream Gradio app|Traceback|Error\(|/tmp/|\\\\|Exception", re.I)


def _one_clear_sentence(message: str) -> str | None:
    """Why ``message`` is not one clear sentence for a user (None when it is)."""
    if GENERIC.search(message):
        return "generic or technical"
    if not message.endswith(".") or re.search(r"[.!?]\s+[A-Z]", message):
        return "not one sentence"
    return None


def _check(case: Case, endpoint: Endpoint, outcome) -> str | None:
    """What is wrong with ``outcome`` (a result or an AppError) for ``case`` at ``endpoint`` (None: all fine)."""
    base = endpoint.name.split()[0]
    message = str(outcome) if isinstance(outcome, AppError) else None
    if message is None and endpoint.batched_error and endpoint.batched_error(outcome):
        message = endpoint.batched_error(outcome).lstrip("⚠ ")
    if isinstance(outcome, Exception) and not isinstance(outcome, AppError):
        return f"{type(outcome).__name__}: {outcome}"
    expected = case.refused or case.refused_by.get(base)
    if message is not None:
        if why := _one_clear_sentence(message):
            return f"{why}: {message!r}"
        if expected:
            return None if re.search(expected, message) else f"refused, but not with /{expected}/: {message!r}"
        if endpoint.face and not case.face and NO_FACE in message:
            return None
        return f"refused a usable file: {message!r}"
    if base == "/default_box":  # it stays silent on a bad file: the Compare button explains
        right = _box_ok(outcome) and list(outcome) == (case.box or list(outcome))
        return None if expected or right else f"box {outcome}"
    if case.face and base == "/verify" and "Same person" not in outcome[3]:
        return f"the turned face photo was not matched with itself: {outcome[3]!r}"
    if expected:
        return f"accepted a file that should be refused with /{expected}/: {str(outcome)[:200]}"
    return None if endpoint.sane(outcome) else f"not a sane result: {str(outcome)[:300]}"


@pytest.fixture(scope="module")
def cases(shared, tmp_path_factory) -> tuple[list[Case], Path]:
    """The corpus, written once into a temporary folder: (cases, folder)."""
    folder = tmp_path_factory.mktemp("odd-uploads")
    written = corpus(shared)
    for case in written:
        (folder / case.name).write_bytes(case.data)
    return written, folder


def test_every_endpoint_takes_or_explains_every_odd_file(running_app, shared, cases):
    log = REPO / ".pytest_cache" / "app.log"
    log_start = log.stat().st_size if log.is_file() else 0
    cases, folder = cases
    assert len(cases) >= 30
    client = Client(running_app, verbose=False)
    face = handle_file(str(shared / FACE))
    # A gallery of one person for /identify; the API is the same whether the gallery lives in a State or
    # in the request's session.
    client.predict("Reference Person", [face], "dlib", api_name="/enroll")

    failures: list[str] = []
    timings: dict[str, float] = {}

    def run(endpoint: Endpoint) -> None:
        start = time.monotonic()
        for case in filter(endpoint.takes, cases):
            for _ in range(3):
                try:
                    outcome = endpoint.call(client, handle_file(str(folder / case.name)), face)
                except CancelledError as exc:
                    # gradio_client's race, not the app's answer: a request sent while the client's shared
                    # event stream closes is dropped on the client side (the app logs nothing); send it again.
                    outcome = exc
                    continue
                except Exception as exc:  # noqa: BLE001 - AppError is the expected kind; anything else is reported
                    outcome = exc
                break
            problem = _check(case, endpoint, outcome)
            if problem:
                failures.append(f"{case.name} -> {endpoint.name}: {problem}")
        timings[endpoint.name] = time.monotonic() - start

    # One thread per endpoint: endpoints run side by side, each one's requests in turn.
    with ThreadPoolExecutor(len(endpoints())) as pool:
        done, pending = wait([pool.submit(run, e) for e in endpoints()], timeout=480)
        assert not pending, "some endpoints did not answer within 8 minutes"
        for future in done:
            future.result()
    print("seconds per endpoint:", {k: round(v, 1) for k, v in sorted(timings.items())})
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(sorted(failures))
    if log.is_file():
        text = log.read_bytes()[log_start:].decode(errors="replace")
        assert "Traceback" not in text, f"the app logged a traceback:\n{text[text.index('Traceback'):][:3000]}"


def test_corpus_files_are_what_they_claim(cases):
    """The hand-written PNGs decode to the pixels they were written from, and the formats are the intended ones."""
    pixels = np.asarray(_photo())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(_png(pixels, 2, interlace=True)))), pixels)
    assert Image.open(io.BytesIO(_png(pixels, 2, interlace=True))).info.get("interlace") == 1
    sixteen = Image.open(io.BytesIO(_png(np.full((40, 40), 65535, np.uint16), 0)))
    assert sixteen.mode.startswith("I") and sixteen.getpixel((0, 0)) == 65535
    kinds = {case.name: case for case in cases[0]}
    assert Image.open(io.BytesIO(kinds["cmyk.jpg"].data)).mode == "CMYK"
    assert Image.open(io.BytesIO(kinds["animated.gif"].data)).n_frames == 3
    assert Image.open(io.BytesIO(kinds["multipage.tiff"].data)).n_frames == 3
    assert struct.unpack(">II", kinds["huge-12000x8000.png"].data[16:24]) == (12000, 8000)  # IHDR's width, height
