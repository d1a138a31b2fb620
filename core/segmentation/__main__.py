"""``python -m core.segmentation {train,train-frozen,evaluate,export,release,list}``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from core.segmentation import evaluate, export, train, train_frozen

    parser = argparse.ArgumentParser(prog="python -m core.segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_arguments(sub.add_parser("train", help="train a model on CamVid"))
    train_frozen.add_arguments(sub.add_parser("train-frozen", help="FCN-8s head on cached frozen VGG-19 features"))
    evaluate.add_arguments(sub.add_parser("evaluate", help="per-class IoU, class avg., global accuracy, mIoU"))
    export.add_arguments(sub.add_parser("export", help="checkpoint -> fp16 safetensors"))
    export.add_release_arguments(sub.add_parser("release", help="export + val evaluation + model card + registry record"))
    sub.add_parser("list", help="print the registered segmentation models")
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.out is None:
            args.out = f"runs/{args.model}"
        train.train(args)
        return 0
    if args.command == "train-frozen":
        train_frozen.train_frozen(args)
        return 0
    if args.command == "evaluate":
        return evaluate.main(args)
    if args.command in ("export", "release"):
        return export.main(args)
    import weights
    import weights.records.segmentation  # noqa: F401  (until weights/records/__init__.py imports it)

    for name in weights.list_models("segmentation"):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
