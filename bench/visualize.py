"""Top-patch index: build time over an image set, and the time to answer a page of 9 units x 9 patches.

    python bench/visualize.py --weights-dir ../shared/weights [--images ../shared/data/camvid/train]
        [--layer conv3_1] [--device auto|cpu|cuda] [--frames N] [--runs 20]

The issue's bounds: building CamVid train (367 frames) for one layer in under a minute on the GPU
host, and answering from the index in under 200 ms on CPU. ``--frames N`` indexes only the first N
images (a CPU-only host), and the build time is also given per image. Answers are timed cold (first
page after loading the index: images read from disk) and warm (later pages), through the panel's
handler, which is what the app runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import weights  # noqa: E402
from core import runtime  # noqa: E402
from core.visualize import top_patches as tp  # noqa: E402
from core.visualize.layers import layer_catalog  # noqa: E402
from spaces.visualize import UNITS_PER_PAGE, top_patches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg19-caffe")
    parser.add_argument("--layer", default="conv3_1")
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "camvid" / "train"))
    parser.add_argument("--frames", type=int, default=0, help="index only the first N images (0: all)")
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--index-dir", default=None,
                        help="keep the index here and reuse it if present (time answers without rebuilding)")
    args = parser.parse_args()

    settings = runtime.use(runtime.Settings.from_env(device=args.device, weights_dir=args.weights_dir))
    device = runtime.pick_device(settings.device)
    with tempfile.TemporaryDirectory() as tmp:
        images = args.images
        if args.frames:  # a folder of links to the first N images
            images = str(Path(tmp) / "frames")
            Path(images).mkdir()
            for name in tp.list_images(args.images)[: args.frames]:
                (Path(images) / Path(name).name).symlink_to(tp.image_root(args.images) / name)
        index_dir = Path(args.index_dir or Path(tmp) / "idx")
        os.environ["CVHUB_INDEX_DIR"] = str(index_dir)
        path = tp.index_path(args.model, args.layer, images, index_dir)
        if not path.exists():
            weights.load(args.model)  # loading the weights is not part of the build
            started = time.perf_counter()
            path = tp.build_index(args.model, [args.layer], images, max_side=args.max_side,
                                  batch_size=args.batch_size, model=weights.load(args.model))[args.layer]
            build = time.perf_counter() - started
        else:
            build = None
        index = tp.load_index(path)
        n = len(index.names)
        print(f"device {device} ({torch.get_num_threads()} threads), {args.model} {args.layer}, {n} images "
              f"at <= {index.max_side} px; load average {os.getloadavg()[0]:.1f}")
        if build is not None:
            print(f"build: {build:.1f} s ({build / n * 1000:.0f} ms per image; 367 frames -> {build / n * 367:.0f} s)")

        layer_catalog(args.model)  # built when the panel is laid out, not per answer

        cold, warm = [], []
        pages = max(1, index.units // UNITS_PER_PAGE)
        for run in range(args.runs):
            tp.read_set_image.cache_clear()
            tp._load_cached.cache_clear()
            t = time.perf_counter()
            top_patches(args.model, args.layer, (run % pages) * UNITS_PER_PAGE)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()  # the same page again: index and images in memory
            top_patches(args.model, args.layer, (run % pages) * UNITS_PER_PAGE)
            warm.append(time.perf_counter() - t)
        # cold: nothing in memory (first answer after start); warm: the page asked again
        for name, times in (("cold", cold), ("warm", warm)):
            ms = sorted(1000 * t for t in times)
            print(f"answer a page of {UNITS_PER_PAGE} units x 9 patches, {name}: "
                  f"median {statistics.median(ms):.0f} ms, "
                  f"min {ms[0]:.0f}, max {ms[-1]:.0f} (bound 200 ms)")


if __name__ == "__main__":
    main()
