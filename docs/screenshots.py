"""Screenshots of every tab answering its first example, at 1280x800 and on a phone (390x844).

    python docs/screenshots.py --weights-dir ../shared/weights [--out docs/screenshots] [--url URL]

Starts the app (``app.py --device cpu``, PyTorch fp32, offline: as the tests start it) on a free port, unless
``--url`` names one already running; then, in headless Chromium (Debian's ``chromium``), does on each tab what a new
student does first (tests/test_app.py ``first_answer``: the first example, or an upload, and the tab's main button)
and saves the window, not the whole page, as ``<out>/<tab id>-<width>.png``.

The Segmentation tab gets a street scene drawn here: CamVid frames may not be redistributed, and a screenshot of
one would redistribute it. The other tabs use the app's own examples (spaces/examples/README.md: public domain or
CC0), scikit-image's pictures and the VGG-19's patch index.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.conftest import start_app  # noqa: E402  (also: offline, PyTorch fp32, as in the tests)
from tests.test_app import FIRST_ANSWERS, first_answer  # noqa: E402

SIZES = ((1280, 800), (390, 844))
#: A PNG larger than this is saved with a 256-colour palette (text and the app's flat colours survive it).
MAX_BYTES = 300_000
#: Style transfer for the pictures: enough steps that the result shows the style, small enough to stay quick.
STYLE_STEPS, STYLE_SIZE = 60, 128


def street_scene(width: int = 960, height: int = 720) -> Image.Image:
    """A drawn street (overcast sky, buildings, pavement, a road with its centre line, a red car, a tree, a pole):
    ENet labels most of it as Sky, Building, Road, Sidewalk and Car."""
    rng = random.Random(0)
    picture = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(picture)
    horizon, kerb = int(height * 0.45), int(height * 0.62)
    for y in range(horizon):
        t = y / horizon
        draw.line([(0, y), (width, y)], fill=(int(205 + 30 * t), int(212 + 28 * t), int(225 + 22 * t)))
    x = 0
    while x < width:
        w, top = rng.randint(90, 180), rng.randint(int(height * 0.08), int(height * 0.3))
        draw.rectangle([x, top, x + w, kerb], fill=rng.choice([(150, 120, 100), (170, 160, 150), (120, 100, 90),
                                                                (190, 180, 165)]))
        for wx in range(x + 12, x + w - 20, 30):
            for wy in range(top + 15, int(height * 0.55), 40):
                draw.rectangle([wx, wy, wx + 16, wy + 22], fill=(70, 80, 95))
        x += w + rng.randint(0, 10)
    draw.rectangle([0, kerb, width, height], fill=(165, 160, 150))
    draw.polygon([(int(width * 0.12), height), (int(width * 0.40), kerb), (int(width * 0.60), kerb),
                  (int(width * 0.88), height)], fill=(95, 95, 100))
    for k in range(5):
        y = int(height * (0.64 + 0.075 * k))
        draw.rectangle([width // 2 - 3 - k, y, width // 2 + 3 + k, y + 18 + 6 * k], fill=(230, 230, 220))
    cx, cy = int(width * 0.30), int(height * 0.70)
    draw.rounded_rectangle([cx, cy - 60, cx + 220, cy + 40], 18, fill=(160, 20, 25))
    draw.rounded_rectangle([cx + 40, cy - 110, cx + 170, cy - 50], 14, fill=(140, 15, 20))
    draw.rectangle([cx + 52, cy - 100, cx + 158, cy - 60], fill=(60, 70, 85))
    for wx in (cx + 40, cx + 180):
        draw.ellipse([wx - 25, cy + 15, wx + 25, cy + 65], fill=(20, 20, 20))
    draw.rectangle([int(width * 0.85), int(height * 0.35), int(width * 0.86), int(height * 0.66)], fill=(60, 45, 30))
    draw.ellipse([int(width * 0.78), int(height * 0.18), int(width * 0.93), int(height * 0.42)], fill=(60, 110, 50))
    draw.rectangle([int(width * 0.70), int(height * 0.2), int(width * 0.705), int(height * 0.64)], fill=(90, 90, 90))
    return picture.filter(ImageFilter.GaussianBlur(1))


def save_png(shot: bytes, path: Path) -> int:
    """Save a screenshot as PNG, with a 256-colour palette when the full-colour file exceeds MAX_BYTES."""
    picture = Image.open(io.BytesIO(shot)).convert("RGB")
    picture.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def shoot(url: str, out: Path, street: Path) -> list[Path]:
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        for width, height in SIZES:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            for title, tab_id, _ in FIRST_ANSWERS:
                answer = first_answer(page, title, street, style=(STYLE_STEPS, STYLE_SIZE), timeout_ms=300_000)
                box = answer.bounding_box()
                if not (0 <= box["y"] <= height - 200):  # show the answer, with a little of what is above it
                    page.evaluate("dy => window.scrollBy(0, dy)", box["y"] - 120)
                for close in page.locator("[data-testid=toast-close]").all():  # "Loading model ..." notes
                    close.click()
                page.mouse.move(0, 0)
                page.wait_for_timeout(800)
                path = out / f"{tab_id}-{width}.png"
                size = save_png(page.screenshot(), path)
                print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {size // 1000} kB")
                saved.append(path)
            page.close()
        browser.close()
    return saved


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", default=None, help="the operator's weights folder (as app.py takes it)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--url", default=None, help="an app already running (then --weights-dir is not used)")
    args = parser.parse_args(argv)
    if not shutil.which("chromium"):
        raise SystemExit("Debian's chromium is needed (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        street = Path(tmp) / "street.png"
        street_scene().save(street)
        if args.url:
            shoot(args.url, args.out, street)
            return
        command = [sys.executable, "app.py", "--device", "cpu"]
        if args.weights_dir:
            command += ["--weights-dir", str(Path(args.weights_dir).resolve())]
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        proc, url = start_app(command, env, subprocess.DEVNULL)
        try:
            shoot(url, args.out, street)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
