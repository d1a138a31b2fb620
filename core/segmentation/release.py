"""Release a trained CamVid segmentation model: weight file, val metrics, model card, facts (:mod:`weights.release`).

    python -m core.segmentation release --name enet-camvid --checkpoint runs/enet-camvid/best.pt \
        --data ../shared/data/camvid
    python -m core.segmentation export --checkpoint runs/enet-camvid/best.pt --out enet.safetensors

``release`` is the one command after training: it exports, scores the *shipped file* on CamVid
val (so the card reports what ships), and writes ``weights/cards/<name>.md`` and
``weights/cards/<name>.json``, whose sha256 and metrics the record reads. ``export`` writes the
weight file alone.
"""

from __future__ import annotations

import json
import time

import torch

from core import runtime, training
from core.datasets.camvid import LECTURE_ORDER
from core.segmentation import train, train_frozen
from core.segmentation.data import camvid_names, load_camvid, sequence_index
from core.segmentation.evaluate import evaluate_model, proxy_scores, quality_check_score
from core.segmentation.frozen_vgg19 import imagenet_encoder_state
from core.segmentation.padding import padded_size
from weights.registry import get_record
from weights.release import add_palette_argument, command_line, export_weights, restored_line, storage_text
from weights.release import release as release_weights

PROG = "python -m core.segmentation"
#: Registered model -> the training command that trains it (program, its arguments).
TRAINERS = {
    **{name: (f"{PROG} train", train.add_arguments) for name in train.MODELS},
    **{name: (f"{PROG} train-frozen", train_frozen.add_arguments) for name in train_frozen.MODELS},
}

# The three networks on the frozen VGG-19 (train_frozen.py) share how they were initialised and trained.
_FROZEN_INIT = ("encoder: the ImageNet VGG-19 (Caffe weights, `vgg19-caffe`), **frozen** and not shipped (the record "
                "names it as an extra file){{tuned_init}}; {part}.")
_FROZEN_TRAINING = ("the frozen encoder ran once per frame (the maps the {part} reads cached in fp16), then only the "
                    "{part} was trained{{tuned_part}}: class-weighted cross-entropy (ENet's 1/ln(1.02 + p_c)), Adam "
                    "lr {{lr:g}} with polynomial decay over {{budget}}, weight decay {{weight_decay:g}}, "
                    "batch {{batch_size}}, {{precision}}, {{frozen_augmentation}}, on {{threads}} CPU thread(s).")
_FROZEN_RESOLUTION = "frames at {crop_w}x{crop_h} ({frozen_size}), padded to {pad_w}x{pad_h} for the stride-32 encoder"


def _frozen_card(architecture: str, init: str, part: str = "decoder") -> dict:
    return {"architecture": architecture, "init": _FROZEN_INIT.format(part=init),
            "training": _FROZEN_TRAINING.format(part=part), "resolution": _FROZEN_RESOLUTION}


#: What the card says about each registered model's architecture, initialisation and training.
CARD_TEXT = {
    "enet-camvid": {
        "architecture": "ENet as in the paper's Table 1 (initial block, bottlenecks with regular, dilated and "
        "asymmetric convs, PReLU, spatial dropout, max-unpool decoder); `core/segmentation/enet.py`.",
        "init": "from scratch (random), as in the ENet paper; no ImageNet weights.",
        # With --init the run continued from an earlier file (say, trained at a lower resolution).
        "continued": " Two stages: an earlier run of this model made the file `{init}` (its card describes that run); "
                     "then, starting from that file (`{init}`), the run below.",
        "training": "class-weighted cross-entropy (ENet's 1/ln(1.02 + p_c)), Adam lr {lr:g} with polynomial decay over "
                    "{budget}, weight decay {weight_decay:g}, batch {batch_size}, flip / scale+crop / colour "
                    "augmentation{street}, {precision}, on {threads} CPU thread(s).",
        "resolution": "frames scaled by {scale:.4g} (480x360 -> {work_w}x{work_h}), random {crop_w}x{crop_h} crops "
                      "after a random scale in {scale_range}",
    },
    "fcn8s-vgg19-camvid": _frozen_card(
        "FCN-8s (Long et al.): class scores from pool5 (through a 3x3 conv to 256 channels and a 1x1, "
        "DeepLab-LargeFOV-style instead of the 4096-wide fc6/fc7), fused with scores from pool4 and "
        "pool3 after learned 2x upsamplings (bilinear-initialised), then 8x; `core/segmentation/fcn.py`.",
        "head: random, score layers of the skips zero-initialised as in the paper", part="head"),
    "segnet-vgg19-camvid": _frozen_card(
        "SegNet's decoder (Badrinarayanan et al.): five stages mirroring VGG-16's blocks (13 3x3 "
        "convs with BN and ReLU), each starting with `max_unpool2d` from the pooling indices of the "
        "mirrored encoder block, then a 3x3 conv to the classes; the encoder is VGG-19 (whose ImageNet "
        "weights are at hand) instead of the paper's VGG-16; `core/segmentation/segnet.py`.",
        "decoder: random (PyTorch's default init)"),
    "unet-vgg19-camvid": _frozen_card(
        "U-Net (Ronneberger et al.) on the frozen VGG-19's block-end ReLU taps (`core/backbones/vgg.py`): from relu5_4 "
        "(stride 16), four decoder blocks each upsample 2x, concatenate the encoder map of that stride "
        "(relu4_4, relu3_4, relu2_2, relu1_2) and apply two 3x3 conv-BN-ReLU (256, 128, 64, 32 "
        "channels), then a 3x3 conv to the classes; `core/segmentation/unet.py`.",
        "decoder: random (PyTorch's default init)"),
}


def _data_line(recipe: dict, data) -> str:
    holdout = recipe.get("holdout")
    if recipe.get("fixed_schedule"):
        return ("- **Data**: CamVid (SegNet's 480x360 version), train split (367 frames) for training; the val split "
                "(101 frames) chose nothing and was scored once, after the last epoch, for the numbers below; 11 "
                "classes, void ignored.")
    if not holdout:
        return ("- **Data**: CamVid (SegNet's 480x360 version), train split (367 frames) for training, val split "
                "(101 frames) for model selection and the numbers below; 11 classes, void ignored.")
    held = len(sequence_index(camvid_names(data, "train"), holdout)[1])
    return (f"- **Data**: CamVid (SegNet's 480x360 version): the train split without sequence {holdout} for training, "
            f"the {held} train frames of sequence {holdout} held out for model selection, and the val split "
            "(101 frames), scored once, at release, for the numbers below; 11 classes, void ignored.")


def _epochs_line(recipe: dict, run: dict) -> str:
    if recipe.get("fixed_schedule"):
        return f"the last of a schedule of {run['best_epoch']} epochs fixed in advance (no epoch chosen on a score)"
    selected_on = f"mIoU on the held-out sequence {recipe['holdout']}" if recipe.get("holdout") else "val mIoU"
    return f"best {selected_on} at epoch {run['best_epoch']} of {run.get('epochs_run', '?')} run"


def model_card(name: str, record, facts: dict, result: dict, *, data) -> str:
    """Markdown model card: data, initialisation, exact commands, epochs, per-class val IoU in the lecture's order."""
    args, run = facts["recipe"], facts["run"]
    iou = dict(zip(result["classes"], result["iou"]))
    acc = dict(zip(result["classes"], result["class_accuracy"]))
    head = "| | " + " | ".join(LECTURE_ORDER) + " | class avg. | mIoU | global |"
    rule = "|---" * (len(LECTURE_ORDER) + 4) + "|"
    acc_row = "| accuracy | " + " | ".join(f"{100 * acc[c]:.1f}" for c in LECTURE_ORDER) + \
        f" | {100 * result['class_avg']:.1f} | | {100 * result['global_accuracy']:.1f} |"
    iou_row = "| IoU | " + " | ".join(f"{100 * iou[c]:.1f}" for c in LECTURE_ORDER) + \
        f" | | **{100 * result['mIoU']:.1f}** | |"
    h, w = args.get("crop", (240, 320))
    padded = padded_size(h, w, train_frozen.STRIDE)
    text = CARD_TEXT[name]
    scale = args.get("scale", 2 / 3)
    tune = args.get("tune_from")
    fmt = dict(lr=args.get("lr", 0), weight_decay=args.get("weight_decay", 0), batch_size=args.get("batch_size"),
               threads=args.get("threads", 1), scale=scale, crop_w=w, crop_h=h,
               scale_range=tuple(args.get("scale_range", (0.75, 1.25))),
               precision="bf16 autocast" if args.get("amp") else "fp32", init=args.get("init"),
               street=(f", widths stretched by a factor in {tuple(args.get('aspect_range'))}, and other cities' "
                       "streets (`--street-augment`, `core/segmentation/shifts.py`: skies recoloured blue, hue, "
                       "saturation, gamma, white balance, blur, noise, JPEG, a car bonnet)"
                       if args.get("street_augment") else ""),
               work_w=round(480 * scale), work_h=round(360 * scale),
               pad_h=padded[0], pad_w=padded[1],
               frozen_size="CamVid's full size" if (w, h) == (480, 360) else f"480x360 scaled by {scale:.3g}",
               frozen_augmentation=("mirror images (each epoch each frame or its mirror, p = 1/2, both encoded once)"
                                    if args.get("mirror") else "no image augmentation (fixed features)"),
               tuned_init=f", except its layers from {tune} on, fine-tuned here and shipped in this file" if tune
               else "",
               tuned_part=(f", with the encoder's layers from {tune} on (run each step on the cached map before them, "
                           f"at {args.get('tune_lr_scale')}x the learning rate)") if tune else "",
               budget="the time budget" if training.lr_minutes(args.get("time_limit"), args.get("fixed_schedule"))
               else f"{args.get('epochs')} epochs")
    bits, delta_bits = facts["palette_bits"], facts.get("delta_bits")
    lines = [
        f"# {name}",
        "",
        record.description,
        "",
        f"- **File**: `weights/{facts['file']}`, {facts['bytes'] / 1e6:.2f} MB, sha256 `{facts['sha256']}`: "
        f"{storage_text(bits, delta_bits=delta_bits)}.",
        *restored_line(facts),
        f"- **Architecture**: {text['architecture']}",
        f"- **Initialisation**: {text['init'].format(**fmt)}"
        + (text["continued"].format(**fmt) if args.get("init") else ""),
        _data_line(args, data) + " The test split (233 frames) is not available here: these are val numbers, not "
        "comparable 1:1 with the papers' test table.",
        f"- **Resolution**: {text['resolution'].format(**fmt)}; inference fits any image into "
        f"{record.input_size[1]}x{record.input_size[0]} (pad to the network's stride, crop back, upsample the logits "
        "to the input size)." + (" The low resolution was chosen for a CPU-only training budget."
                                 if record.input_size[0] < 360 else ""),
        f"- **Training**: {text['training'].format(**fmt)}",
        f"- **Epochs**: {_epochs_line(args, run)} ({run.get('minutes', 0):.0f} min of training, summed over "
        "resumes).",
        f"- **Command**: `{facts['train_command']}`",
        f"- **Release command** (export + val evaluation + this card + the facts its record reads, "
        f"`weights/cards/{name}.json`): `{facts['release_command']}`",
        "",
        f"## CamVid val ({result['frames']} frames), weights as shipped",
        "",
        head,
        rule,
        acc_row,
        iou_row,
        "",
    ]
    proxy = facts["metrics"].get("proxy")
    if proxy:
        shifted = ", ".join(f"{k} {100 * v:.1f}" for k, v in proxy.items() if k not in ("clean", "proxy_mean"))
        lines += [f"Other cities' streets, the proxy (`evaluate --proxy`: the same val frames under fixed shifts, "
                  f"`core/segmentation/shifts.py`): mean **{100 * proxy['proxy_mean']:.1f}** mIoU ({shifted}).", ""]
    checkpoint_val = facts["checkpoint_val"].get("mIoU")
    if checkpoint_val is not None and not args.get("holdout"):  # with a holdout the checkpoint was scored elsewhere
        cost = 100 * (checkpoint_val - result["mIoU"])
        stored = storage_text(bits, short=True, delta_bits=delta_bits)
        verdict = (f"storing it {stored} keeps the accuracy" if cost < 0.5
                   else f"storing it {stored} costs {cost:.2f} points")
        lines.append(f"The fp32 checkpoint scored {100 * checkpoint_val:.2f} val mIoU; the shipped file scores "
                     f"{100 * result['mIoU']:.2f}: {verdict}.")
        lines.append("")
    lines.append("Reference (CamVid **test**, from the papers): ENet 51.3 class IoU, SegNet 55.6 (lecture table), "
                 "a public PyTorch ENet 52.1, SegNet with an ImageNet encoder 60.1. This model had a CPU budget of "
                 "hours; the papers train for hundreds of epochs at 480x360 on a GPU, encoders included.")
    return "\n".join(lines) + "\n"


def release(checkpoint, name: str, data, *, threads: int = 1, limit: int | None = None, weights_dir=None,
            encoder_weights_dir=None, palette_bits: int = 0, delta_bits: int | None = None) -> dict:
    """Export ``checkpoint`` as the file of the registered model ``name``, score it on val, write card and facts.

    ``weights_dir``: where to write (default the project's ``weights/``); ``encoder_weights_dir``: where a
    frozen encoder's weights are (``--weights-dir`` of the app); ``delta_bits``: store the fine-tuned encoder
    layers as their change from ImageNet's (:mod:`weights.delta`), palettised at that many bits (0: fp16).
    """
    torch.set_num_threads(threads)
    record = get_record(name)
    if delta_bits is not None and name not in train_frozen.MODELS:
        raise SystemExit(f"{name} has no pretrained encoder to store changes from")
    val = load_camvid(data, "val", limit=limit)

    def score(model) -> tuple[dict, dict]:
        t0 = time.time()
        result = evaluate_model(model, record, val.images, val.labels)
        result["eval_s"] = round(time.time() - t0, 1)
        metrics = {
            "dataset": f"CamVid val ({result['frames']} frames)",
            "mIoU": round(result["mIoU"], 4),
            "class_avg": round(result["class_avg"], 4),
            "global_accuracy": round(result["global_accuracy"], 4),
            "iou": {c: round(v, 4) for c, v in zip(result["classes"], result["iou"])},
        }
        result["quality_check"] = quality_check_score(model, record, val)
        # The same val frames as other cities' cameras might show them: the stand-in for streets never seen.
        metrics["proxy"] = proxy_scores(model, record, val.images, val.labels)
        return metrics, result

    command = command_line(f"{PROG} release", add_release_arguments, {
        "name": name, "checkpoint": str(checkpoint), "data": str(data), "weights_dir": encoder_weights_dir,
        "threads": threads, "limit": limit, "palette_bits": palette_bits, "delta_bits": delta_bits})
    facts = release_weights(name, checkpoint, trainer=TRAINERS[name], release_command=command, score=score,
                            card=lambda facts, result: model_card(name, record, facts, result, data=data),
                            weights_dir=weights_dir, palette_bits=palette_bits,
                            operator_weights_dir=encoder_weights_dir,
                            delta_base=(lambda extras: imagenet_encoder_state(extras[0])) if delta_bits is not None
                            else None, delta_bits=delta_bits or 0)
    return {"file": facts["file"], "sha256": facts["sha256"], "bytes": facts["bytes"],
            "checkpoint_val_mIoU": facts["checkpoint_val"].get("mIoU"), **facts["metrics"]}


def main(args) -> int:
    if args.command == "release":
        settings = runtime.use(runtime.Settings.from_args(args))
        result = release(args.checkpoint or f"runs/{args.name}/best.pt", args.name, args.data,
                         threads=args.threads, limit=args.limit, encoder_weights_dir=settings.weights_dir,
                         palette_bits=args.palette_bits, delta_bits=args.delta_bits)
        print(json.dumps(result, indent=1))
    else:
        exported = export_weights(args.checkpoint, args.out, args.palette_bits)
        exported["val"] = {k: v for k, v in exported["val"].items() if k != "confusion"}
        print(json.dumps(exported, indent=1))
    return 0


def add_export_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    add_palette_argument(p)


def add_release_arguments(p) -> None:
    p.add_argument("--name", required=True, choices=sorted(TRAINERS),
                   help="the registered model whose file, card and facts to write")
    p.add_argument("--checkpoint", default=None, help="default runs/<name>/best.pt")
    p.add_argument("--data", default="../shared/data/camvid")
    runtime.add_arguments(p, device=False)  # --weights-dir: the folder with a frozen encoder's weights (vgg19-caffe/)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="only the first N val frames (smoke tests)")
    add_palette_argument(p)
    p.add_argument("--delta-bits", type=int, choices=(0, 4, 8), default=None,
                   help="store the fine-tuned encoder layers (--tune-from) as their change from ImageNet's weights, "
                        "palettised at this many bits (0: fp16): changes are small, so a palette fits them closer")
