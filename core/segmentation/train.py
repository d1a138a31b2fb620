"""Train a segmentation network on CamVid (a plain script, like torchvision's references).

    python -m core.segmentation train --model enet --data ../shared/data/camvid --out runs/enet \
        --epochs 60 --batch-size 8 --crop 240 320 --scale 0.6667 --threads 1 --resume

Class-weighted cross-entropy (ENet's 1/ln(1.02+p)), void ignored; Adam with polynomial
decay; augmentation from :mod:`core.segmentation.data`; ``--amp`` for mixed precision (fp16 on
CUDA, bf16 on a CPU); a checkpoint every epoch (``last.pt``, resumable) and the best on val
mIoU (``best.pt``). ``--init`` continues from a released file, e.g. at a higher resolution.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core.checkpoints import save_atomic
from core.segmentation.classes import CAMVID_CLASSES, VOID
from core.segmentation.data import augment_batch, enet_class_weights, load_camvid
from core.segmentation.metrics import confusion_matrix, scores
from core.segmentation.predict import imagenet_normalize, segment_logits

#: --model -> architecture builder ("module:function"), built with num_classes=11.
ARCHITECTURES = {
    "enet": "core.segmentation.enet:enet",
    "segnet": "core.segmentation.segnet:segnet_vgg16",
    "fcn8s": "core.segmentation.fcn:fcn8s_vgg",
    "unet": "core.segmentation.unet:unet_vgg",
}


def build(arch: str):
    from weights.registry import import_object

    return import_object(ARCHITECTURES[arch])(num_classes=len(CAMVID_CLASSES))


@torch.no_grad()
def evaluate_set(model, data, *, scale: float, device, batch_size: int = 4, normalize=imagenet_normalize) -> dict:
    """Confusion-matrix metrics of ``model`` on a :class:`SegmentationSet` at its full label resolution."""
    model.eval()
    conf = torch.zeros(len(CAMVID_CLASSES), len(CAMVID_CLASSES), dtype=torch.int64)
    for i in range(0, len(data), batch_size):
        x = data.images[i : i + batch_size].to(device).float() / 255
        pred = segment_logits(model, x, normalize=normalize, scale=scale).argmax(1)
        conf += confusion_matrix(pred, data.labels[i : i + batch_size].to(device), len(CAMVID_CLASSES), VOID)
    result = scores(conf)
    result["confusion"] = conf.tolist()
    return result


def poly_lr(base: float, progress: float, power: float = 0.9) -> float:
    """Polynomial decay: ``base * (1 - progress) ** power`` for progress in [0, 1) (0 -> base, 0.5 -> ~0.54 base)."""
    return base * (1 - min(max(progress, 0.0), 0.99)) ** power


def set_budget_lr(optimizer, base: float, step: int, total_steps: int, elapsed_s: float,
                  time_limit_min: float | None) -> None:
    """:func:`poly_lr` by whichever budget runs out first, steps or minutes.

    On a CPU the budget is time, not epochs: the learning rate reaches ~0 when the time limit stops the run.
    """
    progress = step / total_steps
    if time_limit_min:
        progress = max(progress, elapsed_s / (time_limit_min * 60))
    for group in optimizer.param_groups:
        group["lr"] = poly_lr(base, progress)


def init_weights(model, path) -> None:
    """Start from a file this project released (fp16 or palettised safetensors), loaded strictly as
    :func:`weights.registry.create` does (BN restores the step counters that export drops)."""
    from weights.registry import load_safetensors

    try:
        model.load_state_dict(load_safetensors(path), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit the model: {exc}") from exc


def train(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a")

    train_set = load_camvid(args.data, "train", limit=args.limit)
    val_set = load_camvid(args.data, "val", limit=args.limit)
    print(f"train {len(train_set)} frames, val {len(val_set)} frames, device {device}", flush=True)

    model = build(args.model)
    if args.init:
        init_weights(model, args.init)
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    weights = enet_class_weights().to(device)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    start_epoch, best, elapsed_before = 0, -1.0, 0.0
    last = out / "last.pt"
    if args.resume and last.exists():
        ckpt = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, best = ckpt["epoch"] + 1, ckpt["best_miou"]
        elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        print(f"resumed from {last}: epoch {start_epoch}, best val mIoU {best:.4f}", flush=True)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda")
    # bf16 needs no loss scaling; on CPUs with AVX-512-BF16 a step is faster (ENet: 15 %, a VGG decoder: 2x).
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    t_start = time.time()

    for epoch in range(start_epoch, args.epochs):
        model.train()
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(train_set), generator=g)
        t0, total_loss = time.time(), 0.0
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            x, y = augment_batch(train_set.images[idx], train_set.labels[idx], tuple(args.crop),
                                 base_scale=args.scale, scale=tuple(args.scale_range), generator=g)
            x, y = imagenet_normalize(x.to(device)), y.to(device)
            set_budget_lr(optimizer, args.lr, epoch * steps_per_epoch + i, total_steps,
                          elapsed_before + time.time() - t_start, args.time_limit)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                loss = F.cross_entropy(model(x).float(), y, weight=weights, ignore_index=VOID)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total_loss += float(loss.detach())
        train_s = time.time() - t0
        val = evaluate_set(model, val_set, scale=args.scale, device=device)
        improved = val["mIoU"] > best
        best = max(best, val["mIoU"])
        entry = {"epoch": epoch, "loss": total_loss / steps_per_epoch, "val_mIoU": val["mIoU"],
                 "val_class_avg": val["class_avg"], "val_global": val["global_accuracy"],
                 "train_s": round(train_s, 1), "eval_s": round(time.time() - t0 - train_s, 1)}
        print(json.dumps(entry), flush=True)
        log.write(json.dumps(entry) + "\n")
        log.flush()
        if improved:
            save_atomic({"model": model.state_dict(), "epoch": epoch, "val": val, "args": vars(args)}, out / "best.pt")
        save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "best_miou": best, "elapsed_s": elapsed_before + time.time() - t_start, "args": vars(args)}, last)
        if args.time_limit and elapsed_before + time.time() - t_start > args.time_limit * 60:
            print(f"time limit of {args.time_limit} min reached after epoch {epoch}", flush=True)
            break
    return {"best_mIoU": best}


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, choices=sorted(ARCHITECTURES))
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--out", default=None, help="checkpoint folder (default runs/<model>)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    p.add_argument("--scale", type=float, default=2 / 3, help="working scale relative to 480x360 frames")
    p.add_argument("--scale-range", type=float, nargs=2, default=(0.75, 1.25))
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="mixed precision: fp16 autocast on CUDA, bf16 on a CPU")
    p.add_argument("--init", default=None, help="start from this released safetensors file instead of random weights")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="use only the first N frames of each split (smoke tests)")
    p.add_argument("--time-limit", type=float, default=None, help="stop after the epoch that passes N minutes of training (summed over resumes)")
    p.add_argument("--seed", type=int, default=0)
