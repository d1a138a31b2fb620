"""Release the CamVid Mask R-CNN: weight file, val AP, model card, facts (:mod:`weights.release`).

    python -m core.instances release --name maskrcnn-vgg19-camvid --checkpoint runs/maskrcnn-vgg19-camvid/best.pt \
        --data ../shared/data/camvid --weights-dir ../shared/weights

The val numbers are measured on the *fp16 file* through the whole detector (images in,
not cached features), so the card reports what ships.
"""

from __future__ import annotations

import json

import torch

from core import runtime
from core.instances import train
from core.instances.evaluate import evaluate_model, percent, quality_check_score
from core.instances.maskrcnn import ANCHOR_SIZES, ASPECT_RATIOS, SHORT_SIDE, max_side
from core.segmentation.data import load_camvid
from weights.registry import get_record
from weights.release import add_palette_argument, command_line, read_checkpoint, restored_line, storage_text
from weights.release import release as release_weights

PROG = "python -m core.instances"


def model_card(name: str, record, facts: dict, result: dict) -> str:
    args, run = facts["recipe"], facts["run"]
    rows = []
    for cls in record.class_names:
        box, mask = result["bbox"]["per_class"][cls], result["segm"]["per_class"][cls]
        rows.append(f"| {cls} | {result['instances'][cls]} | {percent(box['AP'])} | {percent(box['AP50'])} | "
                    f"{percent(mask['AP'])} | {percent(mask['AP50'])} |")
    rows.append(f"| all | {sum(result['instances'].values())} | {percent(result['bbox']['AP'])} | "
                f"{percent(result['bbox']['AP50'])} | {percent(result['segm']['AP'])} | "
                f"{percent(result['segm']['AP50'])} |")
    holdout = args.get("holdout")
    if args.get("fixed_schedule"):
        data = ("train (367 frames) for training; val (101 frames) chose nothing and was scored once, after the last "
                "epoch, for the numbers below")
        epochs = f"The last of a schedule of {run['best_epoch']} epochs fixed in advance, no epoch chosen on a score"
    else:
        data = (f"train (367 frames) without sequence {holdout} for training, sequence {holdout} for model selection, "
                "val (101 frames), scored once at release, for the numbers below" if holdout else
                "train (367 frames) for training, val (101 frames) for model selection and the numbers below")
        epochs = (f"Best mean mask AP50 on {f'the held-out train sequence {holdout}' if holdout else 'val'} at epoch "
                  f"{run['best_epoch']} of {run.get('epochs_run', '?')} run")
    sizes = args.get("sizes")
    sizes_text = f", at each short side of {', '.join(map(str, sizes))} px" if sizes else ""
    drawn_text = (f", at a short side drawn per batch (scored at {args.get('eval_size') or SHORT_SIDE} px)" if sizes
                  else " (the only augmentation)")
    return "\n".join([
        f"# {name}",
        "",
        record.description,
        "",
        f"- **File**: `weights/{facts['file']}`, {facts['bytes'] / 1e6:.2f} MB, sha256 `{facts['sha256']}`: "
        f"{storage_text(facts['palette_bits'])}; the frozen encoder is the `vgg19-caffe` file (not shipped, resolved "
        "from `--weights-dir`).",
        *restored_line(facts),
        "- **Architecture**: torchvision's `MaskRCNN` on `FrozenVGG19Stride8` (`core/instances/maskrcnn.py`): VGG-19 "
        "convs up to relu4_4 (stride 8), then a trained 1x1 conv to 256 channels with GroupNorm; one feature level, "
        f"anchors {ANCHOR_SIZES[0]}-{ANCHOR_SIZES[-1]} px at aspect ratios (height/width) "
        f"{', '.join(f'{r:g}' for r in ASPECT_RATIOS)}; RoI Align 7x7 into a 256-wide two-layer box MLP, RoI Align "
        "14x14 into two 128-channel mask convs and a 28x28 mask per class. Short side scaled to "
        f"{SHORT_SIDE} px (long side at most {max_side(SHORT_SIDE)}; why this size: `SHORT_SIDE` in "
        "`core/instances/maskrcnn.py`).",
        "- **Initialisation**: encoder: the ImageNet VGG-19 (Caffe weights), **frozen**; everything else random "
        "(torchvision's defaults).",
        f"- **Data**: CamVid (SegNet's 480x360 version): {data}. CamVid labels classes, not objects, so an instance "
        "is an 8-connected component of the Car, Pedestrian or Bicyclist pixels (`core/instances/camvid.py`): "
        "touching objects of one class (a row of parked cars, a group of people) **merge into one instance**, in "
        "training and in evaluation alike; components under 50 px are dropped.",
        f"- **Training**: the frozen encoder ran once per frame and once per mirrored frame{sizes_text} (features "
        f"cached in fp16); each epoch sees every train frame once, mirrored with p = 1/2{drawn_text}. Losses of "
        f"torchvision's RPN, box and mask heads; SGD momentum 0.9, lr {args.get('lr'):g} with {args.get('warmup')} "
        f"warm-up steps then cosine decay, weight decay {args.get('weight_decay'):g}, batch {args.get('batch_size')}, "
        f"on {args.get('threads')} CPU threads. {epochs}; {run.get('minutes', 0):.0f} min of training.",
        f"- **Command**: `{facts['train_command']}` (rerun it to resume from `last.pt`)",
        f"- **Release command** (export + val evaluation + this card + the facts its record reads, "
        f"`weights/cards/{name}.json`): `{facts['release_command']}`",
        "",
        f"## CamVid val ({result['frames']} frames), {storage_text(facts['palette_bits'], short=True)} weights as "
        "shipped, COCO AP (pycocotools)",
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


def release(checkpoint, data, *, name: str = train.MODELS[0], threads: int = 2, limit: int | None = None,
            weights_dir=None, encoder_weights_dir=None, palette_bits: int = 0) -> dict:
    """Export ``checkpoint`` (a ``best.pt``, or a released file: :func:`weights.release.read_checkpoint`) as the file
    of ``name`` (``palette_bits``: :mod:`weights.palette`), score it on val (box and mask AP), write card and facts."""
    torch.set_num_threads(threads)
    record = get_record(name)
    trial = train.anchor_overrides(read_checkpoint(checkpoint)["args"])
    own = {"anchor_sizes": ANCHOR_SIZES, "aspect_ratios": ASPECT_RATIOS}
    if any(own[k] != v for k, v in trial.items()):  # a trial's heads: the builder (and the card) would not match
        raise SystemExit(f"{checkpoint} was trained with anchors {trial}, the detector has {own}: change "
                         "ANCHOR_SIZES / ASPECT_RATIOS in core/instances/maskrcnn.py first")
    val = load_camvid(data, "val", limit=limit)

    def score(model) -> tuple[dict, dict]:
        result = {"frames": len(val), **evaluate_model(model, record.class_names, val.images, val.labels)}
        metrics = {"dataset": f"CamVid val ({len(val)} frames), instances = connected components",
                   "mask_AP": result["segm"]["AP"], "mask_AP50": result["segm"]["AP50"],
                   "box_AP": result["bbox"]["AP"], "box_AP50": result["bbox"]["AP50"],
                   "per_class": {n: {"box_AP50": result["bbox"]["per_class"][n]["AP50"],
                                     "mask_AP": result["segm"]["per_class"][n]["AP"],
                                     "mask_AP50": result["segm"]["per_class"][n]["AP50"]} for n in record.class_names}}
        result["quality_check"] = quality_check_score(model, record, val)
        return metrics, result

    command = command_line(f"{PROG} release", add_arguments, {
        "name": name, "checkpoint": str(checkpoint), "data": str(data), "weights_dir": encoder_weights_dir,
        "threads": threads, "limit": limit, "palette_bits": palette_bits})
    facts = release_weights(name, checkpoint, trainer=(f"{PROG} train", train.add_arguments), release_command=command,
                            score=score, card=lambda facts, result: model_card(name, record, facts, result),
                            weights_dir=weights_dir, palette_bits=palette_bits,
                            operator_weights_dir=encoder_weights_dir)
    return {"file": facts["file"], "sha256": facts["sha256"], "bytes": facts["bytes"], **facts["metrics"]}


def main(args) -> int:
    settings = runtime.use(runtime.Settings.from_args(args))
    result = release(args.checkpoint or f"runs/{args.name}/best.pt", args.data, name=args.name,
                     threads=args.threads, limit=args.limit, encoder_weights_dir=settings.weights_dir,
                     palette_bits=args.palette_bits)
    print(json.dumps(result, indent=1))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--name", choices=train.MODELS, default=train.MODELS[0],
                   help="the registered model whose file, card and facts to write")
    p.add_argument("--checkpoint", default=None, help="default runs/<name>/best.pt")
    p.add_argument("--data", default="../shared/data/camvid")
    runtime.add_arguments(p, device=False)  # --weights-dir: the folder with vgg19-caffe/
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N val frames (smoke runs)")
    add_palette_argument(p)
