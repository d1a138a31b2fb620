"""FCN-8s on a frozen ImageNet VGG-19: encode CamVid once, then train only the head on the cached features.

    python -m core.segmentation train-frozen --data ../shared/data/camvid --weights-dir ../shared/weights \
        --out runs/fcn8s_vgg19 --epochs 40 --threads 1

On a CPU a VGG-19 forward costs seconds per frame, so the encoder runs once per frame
(features cached in fp16 in ``<out>/features.pt``, reused on resume) and the head trains in
seconds per epoch. No image augmentation (the features are fixed); dropout in the head.
Checkpoints: ``best.pt`` (head weights, best val mIoU) and ``last.pt``, as :mod:`train` writes them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core.segmentation.classes import CAMVID_CLASSES, VOID
from core.segmentation.data import enet_class_weights, load_camvid
from core.segmentation.metrics import confusion_matrix, scores
from core.segmentation.padding import pad_to_stride


@torch.no_grad()
def encode_split(model, record, data, *, batch_size: int = 4, log=print) -> dict:
    """uint8 frames -> {"pools": [pool3, pool4, pool5] fp16, "labels": uint8 padded with void}."""
    model.eval()
    pools, labels = [[], [], []], []
    t0 = time.time()
    device = next(model.parameters()).device
    for i in range(0, len(data), batch_size):
        x = record.normalize(data.images[i : i + batch_size].to(device).float() / 255)
        x, _ = pad_to_stride(x, model.stride)
        for level, p in zip(pools, model.pools(x)):
            level.append(p.half().cpu())
        y = data.labels[i : i + batch_size]
        ph, pw = x.shape[-2] - y.shape[-2], x.shape[-1] - y.shape[-1]
        labels.append(F.pad(y, (0, pw, 0, ph), value=VOID))
        log(f"encoded {min(i + batch_size, len(data))}/{len(data)} frames, {time.time() - t0:.0f} s")
    return {"pools": [torch.cat(level) for level in pools], "labels": torch.cat(labels)}


@torch.no_grad()
def evaluate_head(head, cache, batch_size: int = 16) -> dict:
    """Val metrics of the head on cached features, at the cached (padded, void-filled) label resolution."""
    head.eval()
    device = next(head.parameters()).device
    conf = torch.zeros(len(CAMVID_CLASSES), len(CAMVID_CLASSES), dtype=torch.int64)
    for i in range(0, len(cache["labels"]), batch_size):
        pools = [p[i : i + batch_size].to(device).float() for p in cache["pools"]]
        pred = head(*pools).argmax(1).cpu()
        conf += confusion_matrix(pred, cache["labels"][i : i + batch_size], len(CAMVID_CLASSES), VOID)
    return scores(conf)


def train_frozen(args) -> dict:
    from core.runtime import configure
    from weights.registry import get_record, load_safetensors
    from weights.resolve import resolve

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    configure(weights_dir=args.weights_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = get_record(args.name)
    from core.segmentation.fcn import FCN8sVGG19

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = FCN8sVGG19(len(CAMVID_CLASSES))
    model.encoder.load_state_dict(load_safetensors(resolve(get_record("vgg19-caffe"))))
    model.to(device)

    cache_path = out / "features.pt"
    cache = torch.load(cache_path, weights_only=True) if cache_path.exists() else {}
    for split in ("val", "train"):
        if split not in cache:
            data = load_camvid(args.data, split, size=tuple(args.size), limit=args.limit)
            cache[split] = encode_split(model, record, data, log=lambda m: print(f"{split}: {m}", flush=True))
            torch.save(cache, cache_path)

    head = model.head
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    weights = enet_class_weights().to(device)
    n = len(cache["train"]["labels"])
    best, t_start, log = -1.0, time.time(), open(out / "log.jsonl", "a")
    for epoch in range(args.epochs):
        head.train()
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(n, generator=g)
        total = 0.0
        for lr_group in optimizer.param_groups:
            lr_group["lr"] = args.lr * (1 - epoch / args.epochs) ** 0.9
        for i in range(0, n, args.batch_size):
            idx = order[i : i + args.batch_size]
            pools = [p[idx].to(device).float() for p in cache["train"]["pools"]]
            target = cache["train"]["labels"][idx].to(device).long()
            loss = F.cross_entropy(head(*pools), target, weight=weights, ignore_index=VOID)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        val = evaluate_head(head, cache["val"])
        entry = {"epoch": epoch, "loss": total / n, "val_mIoU": val["mIoU"], "val_class_avg": val["class_avg"],
                 "val_global": val["global_accuracy"], "elapsed_s": round(time.time() - t_start, 1)}
        print(json.dumps(entry), flush=True)
        log.write(json.dumps(entry) + "\n")
        log.flush()
        state = {f"head.{k}": v.cpu() for k, v in head.state_dict().items()}
        saved_args = {**vars(args), "model": "fcn8s-vgg19", "crop": list(args.size), "scale": args.size[0] / 360}
        if val["mIoU"] > best:
            best = val["mIoU"]
            torch.save({"model": state, "epoch": epoch, "val": val, "args": saved_args}, out / "best.pt")
        torch.save({"model": state, "epoch": epoch, "best_miou": best, "elapsed_s": time.time() - t_start,
                    "args": saved_args}, out / "last.pt")
        if args.time_limit and time.time() - t_start > args.time_limit * 60:
            break
    return {"best_mIoU": best}


def add_arguments(p) -> None:
    p.add_argument("--name", default="fcn8s-vgg19-camvid", help="the registered model (for its normalisation)")
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--weights-dir", default="../shared/weights", help="where vgg19-caffe/ is")
    p.add_argument("--out", default="runs/fcn8s_vgg19")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--time-limit", type=float, default=None, help="minutes of head training")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
