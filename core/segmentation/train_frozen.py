"""FCN-8s, SegNet and U-Net on a frozen ImageNet VGG-19: encode CamVid once, then train only the decoder.

    python -m core.segmentation train-frozen --model segnet-vgg19 --data ../shared/data/camvid \
        --weights-dir ../shared/weights --out runs/segnet_vgg19 --epochs 20 --amp --time-limit 90 --resume

On a CPU a VGG-19 forward costs about a second per frame, so the encoder runs once per frame
and its five relu taps are cached in fp16 (``<cache>/{train,val}.pt``, about 20 MB a frame at
256x320, memory-mapped so that several runs share one copy). Each model's ``decode(taps)``
then trains alone. No image augmentation (the features are fixed); ``--amp`` runs the decoder
under bf16 autocast, which halves a CPU step on this machine's AVX-512-BF16 cores.
Checkpoints: ``best.pt`` (decoder weights, best val mIoU) and ``last.pt`` (+ optimizer, for ``--resume``).
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
from core.segmentation.data import enet_class_weights, load_camvid
from core.segmentation.metrics import confusion_matrix, scores
from core.segmentation.padding import pad_to_stride
from core.segmentation.train import set_budget_lr

#: ``--model`` -> the registered model it trains (its builder, normalisation and RELEASE block).
MODELS = {"fcn8s-vgg19": "fcn8s-vgg19-camvid", "segnet-vgg19": "segnet-vgg19-camvid", "unet-vgg19": "unet-vgg19-camvid"}
STRIDE = 32  # the deepest stride of the three networks: one cache serves them all


@torch.no_grad()
def encode_split(encoder, record, data, *, batch_size: int = 4, log=print) -> dict:
    """uint8 frames -> {"taps": the encoder's maps in fp16, "labels": uint8, padded to the stride with void}."""
    encoder.eval()
    device = next(encoder.parameters()).device
    taps, labels, t0 = None, None, time.time()
    for i in range(0, len(data), batch_size):
        x = record.normalize(data.images[i : i + batch_size].to(device).float() / 255)
        x, _ = pad_to_stride(x, STRIDE)
        maps = encoder(x)
        if taps is None:  # allocated once: a cache of several GB must not be built by concatenation
            taps = [torch.empty((len(data), *m.shape[1:]), dtype=torch.float16) for m in maps]
            labels = torch.full((len(data), *x.shape[-2:]), VOID, dtype=torch.uint8)
        for level, m in zip(taps, maps):
            level[i : i + len(m)] = m.half().cpu()
        y = data.labels[i : i + batch_size]
        labels[i : i + len(y), : y.shape[-2], : y.shape[-1]] = y
        log(f"encoded {min(i + batch_size, len(data))}/{len(data)} frames, {time.time() - t0:.0f} s")
    return {"taps": taps, "labels": labels}


def load_cache(model, record, args) -> dict:
    """{"train": ..., "val": ...} taps of ``args.size`` frames, encoded on first use and memory-mapped after."""
    cache_dir = Path(args.cache or Path(args.out) / "features")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = {}
    for split in ("val", "train"):
        path = cache_dir / f"{split}-{args.size[0]}x{args.size[1]}{f'-limit{args.limit}' if args.limit else ''}.pt"
        if not path.exists():
            data = load_camvid(args.data, split, size=tuple(args.size), limit=args.limit)
            encoded = encode_split(model.encoder, record, data, log=lambda m: print(f"{split}: {m}", flush=True))
            save_atomic(encoded, path)
            del encoded
        cache[split] = torch.load(path, weights_only=True, mmap=True)
    return cache


def _taps(cache: dict, idx, device) -> list[torch.Tensor]:
    return [t[idx].to(device).float() for t in cache["taps"]]


@torch.no_grad()
def evaluate_decoder(model, cache, *, batch_size: int = 8, amp: bool = False) -> dict:
    """Val metrics of ``model.decode`` on cached taps, at the cached (padded, void-filled) label resolution."""
    model.eval()
    device = next(model.parameters()).device
    conf = torch.zeros(len(CAMVID_CLASSES), len(CAMVID_CLASSES), dtype=torch.int64)
    for i in range(0, len(cache["labels"]), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(cache["labels"])))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model.decode(_taps(cache, idx, device)).argmax(1).cpu()
        conf += confusion_matrix(pred, cache["labels"][idx], len(CAMVID_CLASSES), VOID)
    return scores(conf)


def decoder_state(model) -> dict[str, torch.Tensor]:
    """What trains and ships: every tensor but the frozen encoder's."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("encoder.")}


def train_frozen(args) -> dict:
    from core.runtime import configure
    from core.segmentation.frozen_vgg19 import vgg19_to_timm
    from weights.registry import get_record, import_object, load_safetensors
    from weights.resolve import resolve

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    configure(weights_dir=args.weights_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = MODELS[args.model]
    record = get_record(name)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = import_object(record.builder)(**record.builder_kwargs)  # trainable decoder, frozen encoder
    model.encoder.load_state_dict(vgg19_to_timm(load_safetensors(resolve(get_record("vgg19-caffe")))))
    model.to(device)
    cache = load_cache(model, record, args)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    weights = enet_class_weights().to(device)
    n = len(cache["train"]["labels"])
    steps_per_epoch = math.ceil(n / args.batch_size)
    start_epoch, best, elapsed_before = 0, -1.0, 0.0
    last = out / "last.pt"
    if args.resume and last.exists():
        ckpt = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"], strict=False)  # the checkpoint holds no encoder
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, best, elapsed_before = ckpt["epoch"] + 1, ckpt["best_miou"], float(ckpt["elapsed_s"])
        print(f"resumed from {last}: epoch {start_epoch}, best val mIoU {best:.4f}", flush=True)
    saved_args = {**vars(args), "crop": list(args.size), "scale": args.size[0] / 360}
    t_start, log = time.time(), open(out / "log.jsonl", "a")
    for epoch in range(start_epoch, args.epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        total, t0 = 0.0, time.time()
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            set_budget_lr(optimizer, args.lr, epoch * steps_per_epoch + i, args.epochs * steps_per_epoch,
                          elapsed_before + time.time() - t_start, args.time_limit)
            target = cache["train"]["labels"][idx].to(device).long()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                logits = model.decode(_taps(cache["train"], idx, device))
            loss = F.cross_entropy(logits.float(), target, weight=weights, ignore_index=VOID)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        train_s = time.time() - t0
        val = evaluate_decoder(model, cache["val"], amp=args.amp)
        elapsed = elapsed_before + time.time() - t_start
        entry = {"epoch": epoch, "loss": total / n, "val_mIoU": val["mIoU"], "val_class_avg": val["class_avg"],
                 "val_global": val["global_accuracy"], "train_s": round(train_s, 1), "elapsed_s": round(elapsed, 1)}
        print(json.dumps(entry), flush=True)
        log.write(json.dumps(entry) + "\n")
        log.flush()
        state = decoder_state(model)
        if val["mIoU"] > best:
            best = val["mIoU"]
            save_atomic({"model": state, "epoch": epoch, "val": val, "args": saved_args}, out / "best.pt")
        save_atomic({"model": state, "optimizer": optimizer.state_dict(), "epoch": epoch, "best_miou": best,
                     "elapsed_s": elapsed, "args": saved_args}, last)
        if args.time_limit and elapsed > args.time_limit * 60:
            print(f"time limit of {args.time_limit} min reached after epoch {epoch}", flush=True)
            break
    return {"best_mIoU": best}


def add_arguments(p) -> None:
    p.add_argument("--model", default="fcn8s-vgg19", choices=sorted(MODELS))
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--weights-dir", default="../shared/weights", help="where vgg19-caffe/ is")
    p.add_argument("--out", default="runs/fcn8s_vgg19")
    p.add_argument("--cache", default=None, help="folder of the encoded taps, shareable between models "
                                                 "(default <out>/features)")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the decoder (CPU or CUDA)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--time-limit", type=float, default=None, help="minutes of decoder training, summed over resumes")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
