"""Train a segmentation network on CamVid images end to end (a plain script, like torchvision's references).

    python -m core.segmentation train --model enet-camvid --data ../shared/data/camvid \
        --epochs 60 --batch-size 8 --crop 240 320 --scale 0.6667 --threads 1 --resume

``--model`` is the registered model whose architecture (the record's builder) trains; its
checkpoints go to ``runs/<model>`` unless ``--out`` says otherwise. Class-weighted cross-entropy
(ENet's 1/ln(1.02+p)), void ignored; Adam with polynomial decay over the step or time budget;
augmentation from :mod:`core.segmentation.data`; ``--amp`` for mixed precision (bf16 autocast,
CPU or CUDA); ``--compile`` for Inductor-compiled training steps. Resume, log and checkpoints:
:func:`core.training.fit`, the best epoch chosen on val mIoU (or, with ``--holdout``, on a
held-out training sequence; with ``--fixed-schedule``, none: the last epoch, val scored once
after it). ``--init`` continues from a released file, e.g. at a higher resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core import training
from core.datasets.camvid import CAMVID_CLASSES, VOID
from core.segmentation.data import augment_batch, enet_class_weights, load_camvid, split_sequence
from core.segmentation.metrics import confusion_matrix, scores
from core.segmentation.predict import imagenet_normalize, segment_logits
from weights.registry import architecture, load_safetensors

#: The registered models this script trains from images (the frozen-encoder ones: train_frozen.py).
MODELS = ("enet-camvid",)


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


def selection(val: dict) -> training.Evaluation:
    """The segmentation trainers pick the epoch of the best mIoU; the log keeps three numbers of each epoch."""
    return training.Evaluation(
        score=val["mIoU"], metrics=val,
        # "selection", not "val": with --holdout the epoch is picked on a held-out training sequence
        log={"selection_mIoU": val["mIoU"], "selection_class_avg": val["class_avg"],
             "selection_global": val["global_accuracy"]})


def train_step(forward, optimizer, x, y, weights, *, amp: bool) -> torch.Tensor:
    """One step: class-weighted cross-entropy of ``forward(x)`` against ``y`` (void ignored), backward, optimizer step;
    returns the loss. ``x`` is whatever ``forward`` takes (a batch of frames, or a frozen encoder's taps).
    ``amp``: bf16 autocast on the labels' device, CPU or CUDA. bf16 keeps fp32's range, so no loss scaling; it makes
    a CPU step faster on cores with AVX-512-BF16 (ENet: 15 %, a VGG decoder: 2x), and a GPU of the kind this project
    trains on (H100/H200) runs bf16 as fast as fp16."""
    with torch.autocast(y.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(forward(x).float(), y, weight=weights, ignore_index=VOID)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def init_weights(model, path) -> None:
    """Start from a file this project released (fp16 or palettised safetensors), loaded strictly as
    :func:`weights.registry.create` does (BN restores the step counters that export drops)."""
    try:
        model.load_state_dict(load_safetensors(path), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit the model: {exc}") from exc


def train(args) -> dict:
    device = training.start(args)
    train_set = load_camvid(args.data, "train", limit=args.limit)
    if args.holdout:
        # Honest selection: a whole training sequence (say 0006R0) is held out to pick the epoch, so the
        # val clip, whose sequence also supplies training frames, is scored once, at release.
        train_set, val_set = split_sequence(train_set, args.holdout)
    else:
        val_set = load_camvid(args.data, "val", limit=args.limit)
    chosen_on = ("no epoch chosen (fixed schedule), val scored after the last epoch" if args.fixed_schedule
                 else f"selection {len(val_set)} frames")
    print(f"train {len(train_set)} frames, {chosen_on}, device {device}", flush=True)

    model = architecture(args.model)
    if args.init:
        init_weights(model, args.init)
    model = model.to(device)
    # Compiled, an ENet step (batch 4 at 480x360, bf16) is 1.6-1.8x faster on 2 CPU cores after ~2.5 min of compiling
    # (bench/training.py); the checkpoints and the evaluation use the module itself.
    forward = torch.compile(model) if args.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    weights = enet_class_weights().to(device)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)

    def train_epoch(epoch: int, clock) -> dict:
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(train_set), generator=g)
        total_loss = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            x, y = augment_batch(train_set.images[idx], train_set.labels[idx], tuple(args.crop),
                                 base_scale=args.scale, scale=tuple(args.scale_range),
                                 aspect=tuple(args.aspect_range), street=args.street_augment, generator=g)
            x, y = imagenet_normalize(x.to(device)), y.to(device)
            training.set_budget_lr(optimizer, args.lr, epoch * steps_per_epoch + i, args.epochs * steps_per_epoch,
                                   clock(), training.lr_minutes(args.time_limit, args.fixed_schedule))
            total_loss += float(train_step(forward, optimizer, x, y, weights, amp=args.amp))
        return {"loss": total_loss / steps_per_epoch}

    def evaluate(epoch: int) -> training.Evaluation:
        return selection(evaluate_set(model, val_set, scale=args.scale, device=device))

    result = training.fit(model, optimizer, out=args.out, epochs=args.epochs, train_epoch=train_epoch,
                          evaluate=evaluate, args=vars(args), resume=args.resume, time_limit=args.time_limit,
                          fixed_schedule=args.fixed_schedule)
    return {"best_mIoU": result["best"]}


def add_arguments(p) -> None:
    training.add_arguments(p, models=MODELS, model_default=None, epochs=60, batch_size=8, lr=5e-4,
                           weight_decay=2e-4, threads=1)
    p.add_argument("--crop", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    p.add_argument("--scale", type=float, default=2 / 3, help="working scale relative to 480x360 frames")
    p.add_argument("--scale-range", type=float, nargs=2, default=(0.75, 1.25))
    p.add_argument("--aspect-range", type=float, nargs=2, default=(1.0, 1.0),
                   help="stretch each frame's width by a factor drawn from this range (other cameras' aspect)")
    p.add_argument("--street-augment", action="store_true",
                   help="other cities' photometry: skies recoloured blue, hue, gamma, white balance, blur, noise, "
                        "JPEG, a car bonnet (core.segmentation.shifts)")
    p.add_argument("--amp", action="store_true", help="mixed precision: bf16 autocast (CPU or CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training steps (Inductor; faster after "
                                                          "minutes of compiling)")
    p.add_argument("--init", default=None, help="start from this released safetensors file instead of random weights")
