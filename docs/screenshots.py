"""Screenshots of every tab answering its first example, at 1280x800 and on a phone (390x844).

    python docs/screenshots.py --weights-dir ../shared/weights [--out docs/screenshots] [--url URL]

Starts the app (``app.py --device cpu``, PyTorch fp32, offline: as the tests start it) on a free port, unless
``--url`` names one already running; then, in headless Chromium (Debian's ``chromium``), does on each tab what a new
student does first (tests/test_app.py ``first_answer``: the first example, or an upload, and the tab's main button)
and saves the window, not the whole page, as ``<out>/<tab id>-<width>.png``.

Every tab uses the app's own examples (spaces/examples/README.md: open licences, credited in the panels),
scikit-image's pictures and the VGG-19's patch index; no CamVid frame, which may not be redistributed.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

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


def save_png(shot: bytes, path: Path) -> int:
    """Save a screenshot as PNG, with a 256-colour palette when the full-colour file exceeds MAX_BYTES."""
    picture = Image.open(io.BytesIO(shot)).convert("RGB")
    picture.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def shoot(url: str, out: Path) -> list[Path]:
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        for width, height in SIZES:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            for title, tab_id, _ in FIRST_ANSWERS:
                answer = first_answer(page, title, style=(STYLE_STEPS, STYLE_SIZE), timeout_ms=300_000)
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
    if args.url:
        shoot(args.url, args.out)
        return
    command = [sys.executable, "app.py", "--device", "cpu"]
    if args.weights_dir:
        command += ["--weights-dir", str(Path(args.weights_dir).resolve())]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    proc, url = start_app(command, env, subprocess.DEVNULL)
    try:
        shoot(url, args.out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

if __name__ == "__main__":
    main()
