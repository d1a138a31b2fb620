"""``python -m core.segmentation {predict,train,train-frozen,evaluate,export,release,list}``."""

from __future__ import annotations

import argparse
import json
import sys

import torch

import weights
from core import runtime
from core.errors import UserError
from core.images import load_image, to_pil, to_tensor
from core.segmentation import DEFAULT_MODEL, evaluate, release, train, train_frozen
from core.segmentation.familiarity import mean_max_softmax, unfamiliar_note
from core.segmentation.overlay import class_shares, overlay
from core.segmentation.predict import logits_as_recorded


def predict(args) -> int:
    """One photo -> its overlay in ``args.out``, and each class's share of the pixels (the panel's answer)."""
    torch.set_num_threads(args.threads)
    settings = runtime.settings()
    try:  # an unreadable photo, a missing or damaged weight file: one sentence, as the app says it
        loaded = load_image(args.image, what="image")
        model = weights.create(args.model, device=runtime.pick_device(settings.device),
                               weights_dir=settings.weights_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = weights.get_record(args.model)
    rgb01 = to_tensor(loaded.image)[None].to(next(model.parameters()).device)
    logits = logits_as_recorded(model, record, rgb01)
    labels = logits.argmax(1)
    to_pil(overlay(rgb01, labels, record.class_colors, args.opacity)[0].cpu()).save(args.out)
    shares = class_shares(labels, len(record.class_names))[0].tolist()
    confidence = mean_max_softmax(logits).item()
    result = {"model": args.model, "image_size": list(loaded.original_size or loaded.image.size), "overlay": args.out,
              "overlay_size": list(loaded.image.size), "mean_confidence": round(confidence, 4),
              "warning": unfamiliar_note(confidence, record.confidence_floor, "CamVid's road scenes"),
              "classes": {name: round(share, 4) for name, share in sorted(zip(record.class_names, shares),
                                                                          key=lambda kv: -kv[1]) if share > 0}}
    if args.json:
        print(json.dumps(result))
        return 0
    for name, share in result["classes"].items():
        print(f"{name:<12} {100 * share:5.1f} % of the pixels")
    print("\n".join(t for t in (result["warning"], *loaded.notes, f"overlay: {args.out}") if t))
    return 0


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    p.add_argument("--out", required=True, help="where to write the overlay (PNG, JPEG, ...)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=weights.list_models("segmentation"),
                   help=f"default: {DEFAULT_MODEL}, the Segmentation panel's")
    p.add_argument("--opacity", type=float, default=0.6, help="of the class colours over the photo")
    runtime.add_arguments(p)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    add_predict_arguments(sub.add_parser("predict", help="overlay and class shares of one photo"))
    train.add_arguments(sub.add_parser("train", help="train a registered model on CamVid images"))
    train_frozen.add_arguments(sub.add_parser("train-frozen", help="train a decoder on cached frozen VGG-19 features"))
    evaluate.add_arguments(sub.add_parser("evaluate", help="per-class IoU, class avg., global accuracy, mIoU"))
    release.add_export_arguments(sub.add_parser("export", help="checkpoint -> fp16 safetensors"))
    release.add_release_arguments(sub.add_parser("release", help="export + val evaluation + model card + facts"))
    sub.add_parser("list", help="print the registered segmentation models")
    args = parser.parse_args(argv)
    runtime.use(runtime.Settings.from_args(args))  # --weights-dir/--device over CVHUB_*, for every subcommand
    if args.command == "predict":
        return predict(args)
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
