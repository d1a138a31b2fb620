"""``python -m core.segmentation {train,train-frozen,evaluate,export,release,list}``."""

from __future__ import annotations

import argparse
import sys

import weights
from core import runtime
from core.segmentation import evaluate, release, train, train_frozen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_arguments(sub.add_parser("train", help="train a registered model on CamVid images"))
    train_frozen.add_arguments(sub.add_parser("train-frozen", help="train a decoder on cached frozen VGG-19 features"))
    evaluate.add_arguments(sub.add_parser("evaluate", help="per-class IoU, class avg., global accuracy, mIoU"))
    release.add_export_arguments(sub.add_parser("export", help="checkpoint -> fp16 safetensors"))
    release.add_release_arguments(sub.add_parser("release", help="export + val evaluation + model card + facts"))
    sub.add_parser("list", help="print the registered segmentation models")
    args = parser.parse_args(argv)
    runtime.use(runtime.Settings.from_args(args))  # --weights-dir/--device over CVHUB_*, for every subcommand
    if args.command == "train":
        train.train(args)
        return 0
    if args.command == "train-frozen":
        train_frozen.train_frozen(args)
        return 0
    if args.command == "evaluate":
        return evaluate.main(args)
    if args.command in ("export", "release"):
        return release.main(args)
    for name in weights.list_models("segmentation"):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
