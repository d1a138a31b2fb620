"""Train the CamVid Mask R-CNN's heads on the frozen VGG-19: encode the frames once, then train RPN, box and mask heads.

    python -m core.instances train --data ../shared/data/camvid --weights-dir ../shared/weights \
        --out runs/maskrcnn --epochs 30 --threads 2

A VGG-19 forward to relu4_4 costs ~1.3 s per 480x360 frame on a 2-core CPU, so each frame
(and its mirror image, the only augmentation) is encoded once into ``<out>/features.pt``
(fp16, reused on resume); an epoch then costs only the trained layers. Each epoch sees
every train frame once, mirrored with probability 1/2. SGD with momentum, linear warm-up
then cosine decay; box and mask AP on val every ``--eval-every`` epochs, ``best.pt`` kept
on the mean mask AP50 over the three classes, ``last.pt`` resumes an interrupted run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torchvision.models.detection.image_list import ImageList

from core.checkpoints import save_atomic
from core.instances.camvid import INSTANCE_CLASSES, instances_from_labels
from core.instances.evaluate import coco_ap
from core.instances.maskrcnn import maskrcnn_vgg19_camvid, trained_state, vgg19_encoder_state


@torch.no_grad()
def encode_frames(model, images: torch.Tensor, *, batch_size: int = 4, log=print) -> torch.Tensor:
    """uint8 Nx3xHxW frames -> the frozen encoder's features (fp16), through the detector's own transform."""
    model.eval()
    out, t0 = [], time.time()
    for i in range(0, len(images), batch_size):
        batch = [x.float() / 255 for x in images[i : i + batch_size]]
        image_list, _ = model.transform(batch)
        out.append(model.backbone.encode(image_list.tensors).half())
        log(f"encoded {min(i + batch_size, len(images))}/{len(images)} frames, {time.time() - t0:.0f} s")
    return torch.cat(out)


def heads_forward(model, encoded: torch.Tensor, image_sizes, targets=None):
    """The detector after its frozen encoder: GeneralizedRCNN.forward from cached features.

    Training (with targets): the dict of RPN, box and mask losses. Inference: detections in
    the transformed image's coordinates (the caller rescales with ``model.transform.postprocess``).
    """
    features = model.backbone.head(encoded.float())
    stride = model.backbone_stride
    padded = encoded.new_empty(len(encoded), 0, encoded.shape[-2] * stride, encoded.shape[-1] * stride)
    images = ImageList(padded, list(image_sizes))
    proposals, rpn_losses = model.rpn(images, features, targets)
    detections, head_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
    return {**rpn_losses, **head_losses} if model.training else detections


@torch.no_grad()
def evaluate_cached(model, split: dict, batch_size: int = 8) -> dict:
    """Box and mask AP on a cached split (frames kept at their own size: CamVid is the transform's 360 px)."""
    model.eval()
    predictions = []
    for i in range(0, len(split["encoded"]), batch_size):
        sizes = split["sizes"][i : i + batch_size]
        detections = heads_forward(model, split["encoded"][i : i + batch_size], sizes)
        detections = model.transform.postprocess(detections, sizes, sizes)
        predictions += [{k: v.cpu() for k, v in d.items()} for d in detections]
    return coco_ap(predictions, split["targets"], INSTANCE_CLASSES)


def _load_split(model, args, split: str, flip: bool, log) -> dict:
    from core.segmentation.data import load_camvid

    data = load_camvid(args.data, split, limit=args.limit)
    images, labels = (data.images.flip(-1), data.labels.flip(-1)) if flip else (data.images, data.labels)
    return {"encoded": encode_frames(model, images, log=log), "labels": labels,
            "sizes": [tuple(images.shape[-2:])] * len(images)}


def _with_targets(split: dict) -> dict:
    return {**split, "targets": [instances_from_labels(y) for y in split["labels"]]}


def selection_score(ap: dict) -> float:
    """Mean mask AP50 over the classes that have ground truth (what ``best.pt`` is chosen on)."""
    values = [c["AP50"] for c in ap["segm"]["per_class"].values() if c["AP50"] is not None]
    return sum(values) / len(values)


def train(args) -> dict:
    from core.runtime import configure

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    configure(weights_dir=args.weights_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.jsonl", "a")

    def log(entry):
        line = entry if isinstance(entry, str) else json.dumps(entry)
        print(line, flush=True)
        log_file.write(json.dumps(entry if isinstance(entry, dict) else {"msg": line}) + "\n")
        log_file.flush()

    model = maskrcnn_vgg19_camvid()
    model.backbone.encoder.load_state_dict(vgg19_encoder_state())

    cache_path = out / "features.pt"
    cache = torch.load(cache_path, weights_only=True) if cache_path.exists() else {}
    for key, split, flip in (("val", "val", False), ("train", "train", False), ("train_flip", "train", True)):
        if key not in cache:
            cache[key] = _load_split(model, args, split, flip, lambda m, k=key: print(f"{k}: {m}", flush=True))
            save_atomic(cache, cache_path)
    val = _with_targets(cache["val"])
    versions = [_with_targets(cache["train"]), _with_targets(cache["train_flip"])]

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    n = len(versions[0]["encoded"])
    steps_per_epoch = math.ceil(n / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    start_epoch, best = 0, -1.0
    if (out / "last.pt").exists():
        last = torch.load(out / "last.pt", weights_only=True)
        model.load_state_dict(last["model"], strict=False)
        optimizer.load_state_dict(last["optimizer"])
        start_epoch, best = last["epoch"] + 1, last["best"]
        log(f"resumed after epoch {last['epoch']} (best mean mask AP50 {best:.4f})")

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (0.1 + 0.9 * step / args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))

    t_start = time.time()
    saved_args = {k: v for k, v in vars(args).items() if k != "func"}
    for epoch in range(start_epoch, args.epochs):
        model.train()
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order, mirrored = torch.randperm(n, generator=g), torch.rand(n, generator=g) < 0.5
        sums: dict[str, float] = {}
        for b in range(steps_per_epoch):
            step = epoch * steps_per_epoch + b
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            idx = order[b * args.batch_size : (b + 1) * args.batch_size].tolist()
            picks = [versions[int(mirrored[i])] for i in idx]
            encoded = torch.stack([v["encoded"][i] for v, i in zip(picks, idx)])
            losses = heads_forward(model, encoded, [v["sizes"][i] for v, i in zip(picks, idx)],
                                   [v["targets"][i] for v, i in zip(picks, idx)])
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        entry = {"epoch": epoch, **{k: round(v / steps_per_epoch, 4) for k, v in sums.items()},
                 "lr": round(lr_at((epoch + 1) * steps_per_epoch), 6), "elapsed_s": round(time.time() - t_start, 1)}
        state = trained_state(model)
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            ap = evaluate_cached(model, val)
            score = selection_score(ap)
            entry.update({"val_mask_AP50_mean": round(score, 4), "val": ap})
            if score > best:
                best = score
                save_atomic({"model": state, "epoch": epoch, "val": ap, "args": saved_args}, out / "best.pt")
        log(entry)
        save_atomic({"model": state, "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best,
                    "args": saved_args}, out / "last.pt")
        if args.time_limit and time.time() - t_start > args.time_limit * 60:
            break
    return {"best_mean_mask_AP50": best}


def add_arguments(p) -> None:
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--weights-dir", default="../shared/weights", help="where vgg19-caffe/ is")
    p.add_argument("--out", default="runs/maskrcnn")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=100, help="steps of linear warm-up")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--time-limit", type=float, default=None, help="minutes of training in this run")
    p.add_argument("--limit", type=int, default=None, help="first N frames of each split (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
