"""Turn a training checkpoint into the shipped weights: fp16 (or palettised) safetensors, val metrics, model card,
registry record.

    python -m core.segmentation export --checkpoint runs/enet/best.pt --out weights/enet-camvid.safetensors
    python -m core.segmentation release --checkpoint runs/enet/best.pt --name enet-camvid --data ../shared/data/camvid

``release`` is the one command after training: it exports, scores the *shipped file* on CamVid
val (so the card reports what ships), writes ``weights/cards/<name>.md`` and pins sha256 and
metrics in ``weights/records/segmentation.py``.
"""

from __future__ import annotations

import hashlib
import json
import pprint
import re
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
RECORDS_FILE = REPO / "weights" / "records" / "segmentation.py"


def _fits_fp16(v: torch.Tensor) -> bool:
    """Float tensors go fp16 unless a value would overflow it: a BN right after the frozen encoder's raw
    activations keeps running variances in the millions, which fp16 (max 65504) would turn into inf."""
    return v.is_floating_point() and bool(v.abs().max() <= torch.finfo(torch.float16).max)


def export_weights(checkpoint, out, palette_bits: int = 0) -> dict:
    """best.pt -> fp16 safetensors (BN statistics and PReLU slopes included), or with ``palette_bits`` 4 or 8 the
    large weights palettised (:mod:`weights.palette`) and the rest fp16; returns sha256, size, val metrics."""
    from safetensors.torch import save_file

    from weights.palette import palettize

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k: v for k, v in ckpt["model"].items() if not k.endswith("num_batches_tracked")}
    if palette_bits:
        state = palettize(state, palette_bits)
    state = {k: (v.half() if _fits_fp16(v) else v).contiguous() for k, v in state.items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    digest = hashlib.sha256(Path(out).read_bytes()).hexdigest()
    val = ckpt.get("val", {})
    return {"out": str(out), "sha256": digest, "bytes": Path(out).stat().st_size, "epoch": ckpt.get("epoch"),
            "val_mIoU": val.get("mIoU"), "val_iou": val.get("iou"), "val_class_avg": val.get("class_avg"),
            "val_global": val.get("global_accuracy"), "args": ckpt.get("args"), "palette_bits": palette_bits}


def training_command(args: dict) -> str:
    """The ``train`` command line that produced a checkpoint, rebuilt from its saved arguments."""
    parts = ["python -m core.segmentation train", f"--model {args['model']}", f"--data {args['data']}",
             f"--out {args['out']}", f"--epochs {args['epochs']}", f"--batch-size {args['batch_size']}",
             f"--crop {args['crop'][0]} {args['crop'][1]}", f"--scale {args['scale']:.4g}",
             f"--lr {args['lr']:g}", f"--threads {args['threads']}"]
    if args.get("time_limit"):
        parts.append(f"--time-limit {args['time_limit']:g}")
    if args.get("amp"):
        parts.append("--amp")
    if args.get("init"):
        parts.append(f"--init {args['init']}")
    return " ".join(parts) + " --resume"


# The three networks on the frozen VGG-19 (train_frozen.py) share how they were initialised and trained.
_FROZEN_INIT = ("encoder: the ImageNet VGG-19 (Caffe weights, `vgg19-caffe`), **frozen** and not shipped (the record "
                "names it as an extra file); {part}.")
_FROZEN_TRAINING = ("the frozen encoder ran once per frame (its relu taps cached in fp16), then only the {part} was "
                    "trained: class-weighted cross-entropy (ENet's 1/ln(1.02 + p_c)), Adam lr {{lr:g}} with polynomial "
                    "decay over the time budget, weight decay {{weight_decay:g}}, batch {{batch_size}}, {{precision}}, no "
                    "image augmentation (fixed features), on {{threads}} CPU thread(s) (no GPU was lent to this session).")
_FROZEN_RESOLUTION = "frames resized to {crop_w}x{crop_h} (2/3 of 480x360), padded to 256x320 for the stride-32 encoder"


def _frozen_card(architecture: str, init: str, part: str = "decoder") -> dict:
    return {"architecture": architecture, "init": _FROZEN_INIT.format(part=init),
            "training": _FROZEN_TRAINING.format(part=part), "resolution": _FROZEN_RESOLUTION}


#: What the card says about each released model's architecture, initialisation and training.
CARD_TEXT = {
    "enet": {
        "architecture": "ENet as in the paper's Table 1 (initial block, bottlenecks with regular, dilated and "
        "asymmetric convs, PReLU, spatial dropout, max-unpool decoder); `core/segmentation/enet.py`.",
        "init": "from scratch (random), as in the ENet paper; no ImageNet weights.",
        # --init: the first stage, the release this run continued from (see git history for its card).
        "continued": " Two stages: first 38 epochs from scratch at 320x240 (batch 8, lr 0.0005, fp32, 75 min on 1 "
                     "thread; 45.4 val mIoU, the previous release, sha256 `b7373396…` in git history), then, "
                     "starting from that file (`{init}`), the run below.",
        "training": "class-weighted cross-entropy (ENet's 1/ln(1.02 + p_c)), Adam lr {lr:g} with polynomial decay over "
                    "the time budget, weight decay {weight_decay:g}, batch {batch_size}, flip / scale+crop / colour "
                    "augmentation, {precision}, on {threads} CPU thread(s) (no GPU was lent to this session).",
        "resolution": "frames scaled by {scale:.4g} (480x360 -> {work_w}x{work_h}), random {crop_w}x{crop_h} crops "
                      "after a random scale in {scale_range}",
    },
    "fcn8s-vgg19": _frozen_card(
        "FCN-8s (Long et al.): class scores from pool5 (through a 3x3 conv to 256 channels and a 1x1, "
        "DeepLab-LargeFOV-style instead of the 4096-wide fc6/fc7), fused with scores from pool4 and "
        "pool3 after learned 2x upsamplings (bilinear-initialised), then 8x; `core/segmentation/fcn.py`.",
        "head: random, score layers of the skips zero-initialised as in the paper", part="head"),
    "segnet-vgg19": _frozen_card(
        "SegNet's decoder (Badrinarayanan et al.): five stages mirroring VGG-16's blocks (13 3x3 "
        "convs with BN and ReLU), each starting with `max_unpool2d` from the pooling indices of the "
        "mirrored encoder block, then a 3x3 conv to the classes; the encoder is VGG-19 (whose ImageNet "
        "weights are at hand) instead of the paper's VGG-16; `core/segmentation/segnet.py`.",
        "decoder: random (PyTorch's default init)"),
    "unet-vgg19": _frozen_card(
        "U-Net (Ronneberger et al.) on timm's `vgg19` `features_only` encoder: from relu5_4 "
        "(stride 16), four decoder blocks each upsample 2x, concatenate the encoder map of that stride "
        "(relu4_4, relu3_4, relu2_2, relu1_2) and apply two 3x3 conv-BN-ReLU (256, 128, 64, 32 "
        "channels), then a 3x3 conv to the classes; `core/segmentation/unet.py`.",
        "decoder: random (PyTorch's default init)"),
}


def _command(args: dict) -> str:
    from core.segmentation.train_frozen import MODELS

    if args.get("model") not in MODELS:
        return training_command(args)
    parts = ["python -m core.segmentation train-frozen", f"--model {args['model']}", f"--data {args['data']}",
             f"--weights-dir {args['weights_dir']}", f"--out {args['out']}"]
    if args.get("cache"):
        parts.append(f"--cache {args['cache']}")
    parts += [f"--epochs {args['epochs']}", f"--batch-size {args['batch_size']}", f"--lr {args['lr']:g}"]
    if args.get("amp"):
        parts.append("--amp")
    parts.append(f"--threads {args['threads']}")
    if args.get("time_limit"):
        parts.append(f"--time-limit {args['time_limit']:g}")
    return " ".join(parts) + " --resume"


def _storage(info: dict, short: bool = False) -> str:
    bits = info.get("palette_bits")
    if not bits:
        return "fp16" if short else "fp16 safetensors"
    if short:
        return f"{bits}-bit palettised"
    return (f"safetensors with every conv weight {bits}-bit palettised ({2 ** bits} fp16 values per output channel, "
            f"1-D k-means; `weights/palette.py`) and the rest fp16 (fp32 where a value exceeds fp16's range)")


def model_card(name: str, record, result: dict, info: dict, *, checkpoint_val: float | None, run: dict) -> str:
    """Markdown model card: data, initialisation, exact command, epochs, per-class val IoU in the lecture's order."""
    from core.segmentation.classes import LECTURE_ORDER

    args = info["args"] or {}
    iou = dict(zip(result["classes"], result["iou"]))
    acc = dict(zip(result["classes"], result["class_accuracy"]))
    head = "| | " + " | ".join(LECTURE_ORDER) + " | class avg. | mIoU | global |"
    rule = "|---" * (len(LECTURE_ORDER) + 4) + "|"
    acc_row = "| accuracy | " + " | ".join(f"{100 * acc[c]:.1f}" for c in LECTURE_ORDER) + \
        f" | {100 * result['class_avg']:.1f} | | {100 * result['global_accuracy']:.1f} |"
    iou_row = "| IoU | " + " | ".join(f"{100 * iou[c]:.1f}" for c in LECTURE_ORDER) + \
        f" | | **{100 * result['mIoU']:.1f}** | |"
    h, w = args.get("crop", (240, 320))
    text = CARD_TEXT[args.get("model", "enet")]
    scale = args.get("scale", 2 / 3)
    fmt = dict(lr=args.get("lr", 0), weight_decay=args.get("weight_decay", 0), batch_size=args.get("batch_size"),
               threads=args.get("threads", 1), scale=scale, crop_w=w, crop_h=h,
               scale_range=tuple(args.get("scale_range", (0.75, 1.25))),
               precision="bf16 autocast" if args.get("amp") else "fp32", init=args.get("init"),
               work_w=round(480 * scale), work_h=round(360 * scale))
    minutes = run.get("elapsed_s", 0) / 60
    lines = [
        f"# {name}",
        "",
        record.description,
        "",
        f"- **File**: `weights/{Path(info['out']).name}`, {info['bytes'] / 1e6:.2f} MB, {_storage(info)}, "
        f"sha256 `{info['sha256']}`.",
        f"- **Architecture**: {text['architecture']}",
        f"- **Initialisation**: {text['init']}" + (text["continued"].format(**fmt) if args.get("init") else ""),
        "- **Data**: CamVid (SegNet's 480x360 version), train split (367 frames) for training, val split "
        "(101 frames) for model selection and the numbers below; 11 classes, void ignored. The test split "
        "(233 frames) is not available here: these are val numbers, not comparable 1:1 with the papers' test table.",
        f"- **Resolution**: {text['resolution'].format(**fmt)}; inference fits any image into "
        f"{record.input_size[1]}x{record.input_size[0]} (pad to the network's stride, crop back, upsample the logits "
        "to the input size)." + (" The low resolution was chosen for a CPU-only training budget."
                                 if record.input_size[0] < 360 else ""),
        f"- **Training**: {text['training'].format(**fmt)}",
        f"- **Epochs**: best val mIoU at epoch {info['epoch'] + 1} of {run.get('epochs_run', '?')} run "
        f"({minutes:.0f} min of training, summed over resumes).",
        f"- **Command**: `{_command(args)}`",
        f"- **Release command** (export + val evaluation + this card + registry record): "
        f"`python -m core.segmentation release --checkpoint {info['checkpoint']} --name {name} --data {run['data']}"
        + (" --weights-dir ../shared/weights" if record.extra_files else "")
        + (f" --palette-bits {info['palette_bits']}`" if info.get("palette_bits") else "`"),
        "",
        f"## CamVid val ({result['frames']} frames), weights as shipped",
        "",
        head,
        rule,
        acc_row,
        iou_row,
        "",
    ]
    if checkpoint_val is not None:
        cost = 100 * (checkpoint_val - result["mIoU"])
        verdict = (f"storing it {_storage(info, short=True)} keeps the accuracy" if cost < 0.5
                   else f"storing it {_storage(info, short=True)} costs {cost:.2f} points")
        lines.append(f"The fp32 checkpoint scored {100 * checkpoint_val:.2f} val mIoU; the shipped file scores "
                     f"{100 * result['mIoU']:.2f}: {verdict}.")
        lines.append("")
    lines.append("Reference (CamVid **test**, from the papers): ENet 51.3 class IoU, SegNet 55.6 (lecture table), "
                 "a public PyTorch ENet 52.1, SegNet with an ImageNet encoder 60.1. This model had a CPU budget of "
                 "hours; the papers train for hundreds of epochs at 480x360 on a GPU, encoders included.")
    return "\n".join(lines) + "\n"


def pin_record(block_name: str, sha256: str, metrics: dict, records_file: Path = RECORDS_FILE) -> None:
    """Rewrite the RELEASE block of the records file with the new sha256 and metrics."""
    text = records_file.read_text()
    prefix = block_name.split("-")[0].upper()  # enet-camvid -> ENET, fcn8s-vgg19-camvid -> FCN8S
    body = (f"{prefix}_SHA256 = {sha256!r}\n"
            f"{prefix}_METRICS = {pprint.pformat(metrics, width=110, sort_dicts=False)}\n")
    pattern = re.compile(rf"(# RELEASE {re.escape(block_name)} BEGIN\n).*?(# RELEASE {re.escape(block_name)} END)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no RELEASE block for {block_name} in {records_file}")
    records_file.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))


def release(checkpoint, name: str, data, *, threads: int = 1, limit: int | None = None, weights_dir: Path | None = None,
            encoder_weights_dir=None, palette_bits: int = 0) -> dict:
    """Export ``checkpoint`` as ``weights/<name>.safetensors``, score it on val, write card and record.

    ``encoder_weights_dir``: where a frozen encoder's weights are (``--weights-dir`` of the app).
    """
    import weights.records.segmentation  # noqa: F401  (registers the record whose block we rewrite)
    from core.segmentation.data import load_camvid
    from core.segmentation.evaluate import evaluate_model
    from weights.registry import get_record, import_object, load_safetensors

    torch.set_num_threads(threads)
    if encoder_weights_dir:
        from core.runtime import configure

        configure(weights_dir=encoder_weights_dir)
    weights_dir = Path(weights_dir or REPO / "weights")
    record = get_record(name)
    out = weights_dir / record.source.filename
    info = export_weights(checkpoint, out, palette_bits)
    info["checkpoint"] = str(checkpoint)
    model = import_object(record.builder)(**record.builder_kwargs)
    state = import_object(record.state_loader)(out) if record.state_loader else load_safetensors(out)
    model.load_state_dict(state, strict=True)
    model.eval()
    val = load_camvid(data, "val", limit=limit)
    t0 = time.time()
    result = evaluate_model(model, record, val.images, val.labels)
    result["eval_s"] = round(time.time() - t0, 1)
    last = Path(checkpoint).with_name("last.pt")
    run = {"data": str(data)}
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        run.update(epochs_run=ckpt["epoch"] + 1, elapsed_s=float(ckpt.get("elapsed_s", 0.0)))
    metrics = {
        "dataset": f"CamVid val ({result['frames']} frames)",
        "mIoU": round(result["mIoU"], 4),
        "class_avg": round(result["class_avg"], 4),
        "global_accuracy": round(result["global_accuracy"], 4),
        "iou": {c: round(v, 4) for c, v in zip(result["classes"], result["iou"])},
        "epochs": info["epoch"] + 1,
    }
    card = model_card(name, record, result, info, checkpoint_val=info["val_mIoU"], run=run)
    (weights_dir / "cards").mkdir(exist_ok=True)
    # A model released for the first time has no card in its record yet: the card is named after it.
    (weights_dir / "cards" / (record.card or f"{name}.md")).write_text(card)
    if weights_dir == REPO / "weights":
        pin_record(name, info["sha256"], metrics)
    return {"file": str(out), "sha256": info["sha256"], "bytes": info["bytes"], "checkpoint_val_mIoU": info["val_mIoU"],
            **metrics}


def main(args) -> int:
    if args.command == "release":
        print(json.dumps(release(args.checkpoint, args.name, args.data, threads=args.threads, limit=args.limit,
                                 encoder_weights_dir=args.weights_dir, palette_bits=args.palette_bits), indent=1))
    else:
        print(json.dumps(export_weights(args.checkpoint, args.out, args.palette_bits), indent=1))
    return 0


def _add_palette_argument(p) -> None:
    p.add_argument("--palette-bits", type=int, choices=(0, 4, 8), default=0,
                   help="0: fp16; 4 or 8: palettise the conv weights (for decoders too big for the repository in fp16)")


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    _add_palette_argument(p)


def add_release_arguments(p) -> None:
    p.add_argument("--checkpoint", default="runs/enet/best.pt")
    p.add_argument("--name", default="enet-camvid", help="the registered model whose file, card and record to write")
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="only the first N val frames (smoke tests)")
    p.add_argument("--weights-dir", default=None, help="folder with a frozen encoder's weights (vgg19-caffe/)")
    _add_palette_argument(p)
