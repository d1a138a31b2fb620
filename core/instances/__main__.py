"""``python -m core.instances {predict,evaluate,train,release,list}``: Mask R-CNN from the command line."""

from __future__ import annotations

import argparse
import json
import sys

import torch

import weights
from core import runtime
from core.errors import UserError
from core.images import load_image, to_tensor
from core.instances import evaluate, release, train
from core.instances.predict import default_model, detect


def predict(args) -> int:
    torch.set_num_threads(args.threads)
    try:
        loaded = load_image(args.image, what="image")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.model = args.model or default_model()
    record = weights.get_record(args.model)
    settings = runtime.settings()
    try:  # a missing or damaged weight file: one sentence, as the app says it
        model = weights.create(args.model, device=runtime.pick_device(settings.device),
                               weights_dir=settings.weights_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    instances = detect(model, record.class_names, [to_tensor(loaded.image)], score=args.score)[0]
    # load_image may shrink a huge photo: report boxes in the file's own pixels.
    scale = loaded.original_size[0] / loaded.image.size[0] if loaded.original_size[0] else 1.0
    rows = []
    for inst in instances:
        row = inst.as_dict()
        row["box"] = [round(v * scale, 1) for v in inst.box]
        if inst.mask is not None:
            row["mask_area"] = round(inst.mask_area * scale * scale)
        if inst.keypoints is not None:
            row["keypoints"] = [[round(x * scale, 1), round(y * scale, 1), round(float(s), 2)]
                                for x, y, s in inst.keypoints.tolist()]
        rows.append(row)
    result = {"model": args.model, "image_size": list(loaded.original_size or loaded.image.size), "instances": rows}
    if args.json:
        print(json.dumps(result))
    else:
        for row in rows:
            print(f"{row['label']:<12} {row['score']:.2f}  box {row['box']}  mask {row['mask_area']} px"
                  + (f"  {len(row['keypoints'])} keypoints" if "keypoints" in row else ""))
        print(f"{len(rows)} instances with score >= {args.score}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.instances", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="instances of one image: label, score, box, mask area")
    p.add_argument("image")
    p.add_argument("--model", default=None, help="default: torchvision's COCO Mask R-CNN v2 where its file is here, "
                                                 "else the project's maskrcnn-vgg19-camvid")
    p.add_argument("--score", type=float, default=0.5, help="keep detections scoring at least this")
    runtime.add_arguments(p)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    evaluate.add_arguments(sub.add_parser("evaluate", help="box and mask AP / AP50 per class on CamVid-style labels"))
    train.add_arguments(sub.add_parser("train", help="train the CamVid Mask R-CNN's heads on the frozen VGG-19"))
    release.add_arguments(sub.add_parser("release", help="export + val AP + model card + facts"))
    sub.add_parser("list", help="print the registered instance segmentation models")
    args = parser.parse_args(argv)
    runtime.use(runtime.Settings.from_args(args))  # --weights-dir/--device over CVHUB_*, for every subcommand
    if args.command == "predict":
        return predict(args)
    if args.command == "evaluate":
        return evaluate.main(args)
    if args.command == "train":
        print(json.dumps(train.train(args)))
        return 0
    if args.command == "release":
        return release.main(args)
    print("\n".join(weights.list_models("instances")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
