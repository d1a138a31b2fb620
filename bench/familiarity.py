"""How sure the segmentation models are on CamVid val and on photos unlike it: the data of each record's
``confidence_floor`` (core/segmentation/familiarity.py).

    python bench/familiarity.py --weights-dir ../shared/weights [--models enet-camvid ...]
        [--val ../shared/data/camvid/val] [--others spaces/examples ../shared/data/faces/gallery_and_queries/test]

For each model: the mean max-softmax confidence of every val frame and of every other photo, and a floor 0.02
under the lowest val frame's (the margin keeps a val-like frame with some glare above it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import weights  # noqa: E402
from core import runtime  # noqa: E402
from core.images import load_image, to_tensor  # noqa: E402
from core.segmentation.familiarity import mean_max_softmax  # noqa: E402
from core.segmentation.predict import logits_as_recorded  # noqa: E402

MARGIN = 0.02
PHOTOS = ("*.jpg", "*.png")


def confidences(name: str, folder: Path) -> dict[str, float]:
    model, record = weights.load(name), weights.get_record(name)
    found = {}
    for path in sorted(p for pattern in PHOTOS for p in folder.glob(pattern)):
        x = to_tensor(load_image(path).image)[None]
        found[path.name] = mean_max_softmax(logits_as_recorded(model, record, x)).item()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    runtime.add_arguments(parser)
    parser.add_argument("--models", nargs="+", default=weights.list_models("segmentation"))
    parser.add_argument("--val", type=Path, default=Path("../shared/data/camvid/val"))
    parser.add_argument("--others", nargs="+", type=Path,
                        default=[Path("spaces/examples"), Path("../shared/data/faces/gallery_and_queries/test")])
    args = parser.parse_args()
    runtime.use(runtime.Settings.from_args(args))
    torch.set_num_threads(2)
    for name in args.models:
        val = confidences(name, args.val)
        others = {k: v for folder in args.others for k, v in confidences(name, folder).items()}
        floor = min(val.values()) - MARGIN
        print(f"{name}: val {min(val.values()):.3f}..{max(val.values()):.3f} ({len(val)} frames); others "
              f"{min(others.values()):.3f}..{max(others.values()):.3f}; floor {floor:.2f}, "
              f"{sum(v < floor for v in others.values())} of {len(others)} others under it", flush=True)
        for photo, value in sorted(others.items(), key=lambda kv: -kv[1]):
            print(f"    {value:.3f} {photo}", flush=True)


if __name__ == "__main__":
    main()
