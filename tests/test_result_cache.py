"""Result images reach every user whole while many users get the same picture at once (issue "A whole class at once").

Gradio's own ``save_pil_to_cache`` rewrote ``<cache>/<sha256>/image.webp`` in place on every call, so a
reader (a user downloading the result) could get a truncated file; ``spaces.common`` swaps in an atomic one.
"""

import io
import tempfile
import threading

import gradio as gr
import numpy as np
from gradio import processing_utils
from PIL import Image

from spaces.common import atomic_result_cache, save_pil_to_cache_atomically


def _noise(seed: int, size=(320, 240)) -> Image.Image:
    """Noise compresses badly, so the file is large (~230 kB as PNG) and a write takes long enough to be caught."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _hammer(save, tmp_path, writers=4, saves_each=6, readers=2) -> tuple[int, list[str]]:
    """Writers save the same image over and over while readers read the cached file; returns (reads, bad reads)."""
    image = _noise(0)
    expected = processing_utils.encode_pil_to_bytes(image, "png")
    path = save(image, str(tmp_path), format="png")  # the file exists before the crowd arrives
    done = threading.Event()
    bad: list[str] = []
    reads = [0]

    def write():
        for _ in range(saves_each):
            assert save(image, str(tmp_path), format="png") == path

    def read():
        while not done.is_set():
            data = open(path, "rb").read()
            reads[0] += 1
            if data != expected:
                bad.append(f"{len(data)} of {len(expected)} bytes")
                continue
            Image.open(io.BytesIO(data)).load()  # and it decodes

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    writing = [threading.Thread(target=write) for _ in range(writers)]
    for t in writing:
        t.start()
    for t in writing:
        t.join()
    done.set()
    for t in threads:
        t.join()
    return reads[0], bad


def test_readers_always_get_the_whole_file_while_the_same_image_is_saved_again(tmp_path):
    reads, bad = _hammer(save_pil_to_cache_atomically, tmp_path)
    assert reads > 0
    assert bad == [], f"{len(bad)} of {reads} reads got a partial file, e.g. {bad[:3]}"
    # no staging files are left behind
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["image.png"]


def test_different_images_saved_at_once_get_different_whole_files(tmp_path):
    images = [_noise(seed, (64, 48)) for seed in range(16)]
    paths = [None] * len(images)

    def save(k):
        paths[k] = save_pil_to_cache_atomically(images[k], str(tmp_path), format="png")

    threads = [threading.Thread(target=save, args=(k,)) for k in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == len(images)
    for image, path in zip(images, paths):
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(image))


def test_same_signature_and_result_as_gradio_and_idempotent(tmp_path, monkeypatch):
    original = processing_utils.save_pil_to_cache
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", original)  # restored after the test
    image = _noise(1, (32, 24))
    assert save_pil_to_cache_atomically(image, str(tmp_path)) == original(image, str(tmp_path))  # webp default
    assert save_pil_to_cache_atomically(image, str(tmp_path), "x", "png") == original(image, str(tmp_path), "x", "png")
    atomic_result_cache()
    atomic_result_cache()
    assert processing_utils.save_pil_to_cache is save_pil_to_cache_atomically


def test_gradio_image_outputs_go_through_the_atomic_save(tmp_path, monkeypatch):
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", processing_utils.save_pil_to_cache)
    atomic_result_cache()
    staged, mkstemp = [], tempfile.mkstemp

    def spy(*args, **kwargs):
        staged.append(kwargs["dir"])
        return mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # an empty cache: the image is written, not reused
    out = gr.Image(type="pil", format="png").postprocess(_noise(2, (40, 30)))
    assert len(staged) == 1 and out.path == str(staged[0] / "image.png")
