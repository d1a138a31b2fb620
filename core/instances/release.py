"""Turn the Mask R-CNN training checkpoint into the shipped weights: fp16 file, val AP, model card, pinned record.

    python -m core.instances release --checkpoint runs/maskrcnn/best.pt --data ../shared/data/camvid \
        --weights-dir ../shared/weights

The val numbers are measured on the *fp16 file* through the whole detector (images in,
not cached features), so the card reports what ships.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from core.instances.evaluate import percent
from core.segmentation.export import REPO, export_weights, pin_record

NAME = "maskrcnn-vgg19-camvid"
RECORDS_FILE = REPO / "weights" / "records" / "instances.py"


def model_card(record, result: dict, info: dict, run: dict) -> str:
    args = info["args"] or {}
    rows = []
    for name in record.class_names:
        box, mask = result["bbox"]["per_class"][name], result["segm"]["per_class"][name]
        rows.append(f"| {name} | {result['instances'][name]} | {percent(box['AP'])} | {percent(box['AP50'])} | "
                    f"{percent(mask['AP'])} | {percent(mask['AP50'])} |")
    rows.append(f"| all | {sum(result['instances'].values())} | {percent(result['bbox']['AP'])} | "
                f"{percent(result['bbox']['AP50'])} | {percent(result['segm']['AP'])} | {percent(result['segm']['AP50'])} |")
    command = (f"python -m core.instances train --data {args.get('data')} --weights-dir {args.get('weights_dir')} "
               f"--out {args.get('out')} --epochs {args.get('epochs')} --batch-size {args.get('batch_size')} "
               f"--lr {args.get('lr'):g} --threads {args.get('threads')}")
    return "\n".join([
        f"# {NAME}",
        "",
        record.description,
        "",
        f"- **File**: `weights/{Path(info['out']).name}`, {info['bytes'] / 1e6:.2f} MB, fp16 safetensors, "
        f"sha256 `{info['sha256']}`; the frozen encoder is the `vgg19-caffe` file (not shipped, resolved from "
        "`--weights-dir`).",
        "- **Architecture**: torchvision's `MaskRCNN` on `FrozenVGG19Stride8` (`core/instances/maskrcnn.py`): VGG-19 "
        "convs up to relu4_4 (stride 8), then a trained 1x1 conv to 256 channels with GroupNorm; one feature level, "
        "anchors 16-256 px x 3 aspect ratios; RoI Align 7x7 into a 256-wide two-layer box MLP, RoI Align 14x14 into "
        "two 128-channel mask convs and a 28x28 mask per class. Short side scaled to 360 px (long side at most 640).",
        "- **Initialisation**: encoder: the ImageNet VGG-19 (Caffe weights), **frozen**; everything else random "
        "(torchvision's defaults).",
        "- **Data**: CamVid (SegNet's 480x360 version): train (367 frames) for training, val (101 frames) for model "
        "selection and the numbers below. CamVid labels classes, not objects, so an instance is an 8-connected "
        "component of the Car, Pedestrian or Bicyclist pixels (`core/instances/camvid.py`): touching objects of one "
        "class (a row of parked cars, a group of people) **merge into one instance**, in training and in evaluation "
        "alike; components under 50 px are dropped.",
        f"- **Training**: the frozen encoder ran once per frame and once per mirrored frame (features cached in fp16); "
        f"each epoch sees every train frame once, mirrored with p = 1/2 (the only augmentation). Losses of "
        f"torchvision's RPN, box and mask heads; SGD momentum 0.9, lr {args.get('lr'):g} with {args.get('warmup')} "
        f"warm-up steps then cosine decay, weight decay {args.get('weight_decay'):g}, batch {args.get('batch_size')}, "
        f"on {args.get('threads')} CPU threads (no GPU was lent to this session). Best mean mask AP50 on val at epoch "
        f"{info['epoch'] + 1} of {run.get('epochs_run', '?')} run ({run.get('minutes', 0):.0f} min of training).",
        f"- **Command**: `{command}` (rerun it to resume from `last.pt`)",
        f"- **Release command** (export + val evaluation + this card + registry record): `python -m core.instances "
        f"release --checkpoint {info['checkpoint']} --data {run['data']} --weights-dir ../shared/weights`",
        "",
        f"## CamVid val ({result['frames']} frames), fp16 weights as shipped, COCO AP (pycocotools)",
        "",
        "| class | instances | box AP | box AP50 | mask AP | mask AP50 |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "AP averages IoU thresholds 0.50:0.95, AP50 is at IoU 0.5; all object sizes, up to 100 detections per frame.",
        "For scale: torchvision's COCO Mask R-CNN (ResNet-50-FPN, trained on 118k images with a fine-tuned backbone) "
        "reports 34.6 mask AP on COCO; this model trains heads only, on 367 frames of one city, on a CPU.",
        "",
    ])


def release(checkpoint, data, *, threads: int = 2, limit: int | None = None, weights_dir=None,
            encoder_weights_dir=None) -> dict:
    import weights
    from core.instances.evaluate import evaluate_model
    from core.runtime import configure
    from core.segmentation.data import load_camvid
    from weights.registry import import_object

    torch.set_num_threads(threads)
    if encoder_weights_dir:
        configure(weights_dir=encoder_weights_dir)
    weights_dir = Path(weights_dir or REPO / "weights")
    record = weights.get_record(NAME)
    out = weights_dir / record.source.filename
    info = export_weights(checkpoint, out)
    info["checkpoint"] = str(checkpoint)
    model = import_object(record.builder)()
    model.load_state_dict(import_object(record.state_loader)(out), strict=True)
    val = load_camvid(data, "val", limit=limit)
    t0 = time.time()
    result = {"frames": len(val), **evaluate_model(model, record.class_names, val.images, val.labels)}
    run = {"data": str(data), "eval_s": round(time.time() - t0, 1)}
    last = Path(checkpoint).with_name("last.pt")
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        run["epochs_run"] = ckpt["epoch"] + 1
    log = Path(checkpoint).with_name("log.jsonl")
    if log.exists():
        # Each (resumed) run counts its own elapsed time from zero: add up the runs.
        total, previous = 0.0, 0.0
        for line in log.read_text().splitlines():
            elapsed = json.loads(line).get("elapsed_s")
            if elapsed is None:
                continue
            if elapsed < previous:
                total += previous
            previous = elapsed
        run["minutes"] = (total + previous) / 60
    metrics = {"dataset": f"CamVid val ({len(val)} frames), instances = connected components",
               "mask_AP": result["segm"]["AP"], "mask_AP50": result["segm"]["AP50"],
               "box_AP": result["bbox"]["AP"], "box_AP50": result["bbox"]["AP50"],
               "per_class": {n: {"box_AP50": result["bbox"]["per_class"][n]["AP50"],
                                 "mask_AP": result["segm"]["per_class"][n]["AP"],
                                 "mask_AP50": result["segm"]["per_class"][n]["AP50"]} for n in record.class_names},
               "epochs": info["epoch"] + 1}
    (weights_dir / "cards").mkdir(exist_ok=True)
    (weights_dir / "cards" / f"{NAME}.md").write_text(model_card(record, result, info, run))
    if weights_dir == REPO / "weights":
        pin_record(NAME, info["sha256"], metrics, RECORDS_FILE)
    return {"file": str(out), "sha256": info["sha256"], "bytes": info["bytes"], **metrics}


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", default="runs/maskrcnn/best.pt")
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--weights-dir", default="../shared/weights", help="folder with vgg19-caffe/")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N val frames (smoke runs)")
