"""Command line: build top-patch indexes, list a model's layers.

    python -m core.visualize layers --model vgg19-caffe
    python -m core.visualize index --model vgg19-caffe --images skimage --layers conv1_1,conv3_1,conv5_1
    python -m core.visualize index --model vgg19-caffe --images ../shared/data/camvid/train \
        --layers conv4_1 --weights-dir ../shared/weights --device cuda

``--images skimage`` is scikit-image's bundled sample set, the app's default (redistributable).
"""

from __future__ import annotations

import argparse
import sys

from core import runtime
from core.errors import UserError
from core.visualize.layers import layer_catalog
from core.visualize.top_patches import build_index


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.visualize", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    layers = sub.add_parser("layers", help="list a model's layers with their receptive fields")
    layers.add_argument("--model", required=True)
    index = sub.add_parser("index", help="build the top-9 patch index of some layers over an image set")
    index.add_argument("--model", required=True)
    index.add_argument("--images", default="skimage", help="a folder of images, or 'skimage' (default)")
    index.add_argument("--layers", required=True, help="comma-separated layer names, e.g. conv1_1,conv3_1")
    index.add_argument("--index-dir", default=None,
                       help="where indexes go (default ~/.cache/cvhub/index or CVHUB_INDEX_DIR)")
    index.add_argument("--max-side", type=int, default=512, help="images are read at most this large")
    index.add_argument("--batch-size", type=int, default=8)
    index.add_argument("--top", type=int, default=9, help="patches kept per unit")
    index.add_argument("--per-image", type=int, default=1, help="patches one image may give a unit")
    runtime.add_arguments(index)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        runtime.use(runtime.Settings.from_args(args))  # --weights-dir/--device over CVHUB_*
        if args.command == "layers":
            for name, (path, rf) in layer_catalog(args.model).items():
                print(f"{name:>12}  module {path:<10} field {rf.size:g}px  stride {rf.jump:g}px")
            return 0
        layers = [name.strip() for name in args.layers.split(",") if name.strip()]
        written = build_index(args.model, layers, args.images, index_dir=args.index_dir, max_side=args.max_side,
                              batch_size=args.batch_size, k=args.top, per_image=args.per_image)
        for layer, path in written.items():
            print(f"{layer}: {path}")
        return 0
    except (UserError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
