"""FCN-8s, SegNet and U-Net on a frozen ImageNet VGG-19: encode CamVid once, then train only the decoder.

    python -m core.segmentation train-frozen --model segnet-vgg19-camvid --data ../shared/data/camvid \
        --weights-dir ../shared/weights --epochs 20 --amp --time-limit 90 --resume

On a CPU a VGG-19 forward costs about a second per frame, so the encoder runs once per frame
and the maps the model reads are cached in fp16 (``<cache>/{split}-{H}x{W}-{taps}.pt``, memory-mapped
so that several runs share one copy): SegNet and U-Net read the five block-end ReLUs (about 20 MB a
frame at 256x320, 45 MB at 384x480), FCN-8s only pool3-5 (2.4 MB at 384x480). Each model's
``decode(maps)`` then trains alone. The features are fixed, so the only augmentation is ``--mirror``:
every train frame's mirror image is encoded too, and each epoch sees each frame or its mirror (p = 1/2).
``--tune-from conv5_1`` fine-tunes the encoder's layers from there on as well (at ``--tune-lr-scale`` times the
decoder's learning rate): they run each step on the cached tap before them (pool4), so the cache stays valid.
``--amp`` runs the decoder under bf16 autocast, which halves a CPU step on this machine's AVX-512-BF16
cores. Resume, log and checkpoints (the trained weights only): :func:`core.training.fit`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from core import training
from core.checkpoints import save_atomic
from core.datasets.camvid import CAMVID_CLASSES, VOID
from core.segmentation.data import camvid_names, enet_class_weights, load_camvid, sequence_index
from core.segmentation.metrics import confusion_matrix, scores
from core.segmentation.padding import pad_to_stride
from core.segmentation.train import selection, train_step
from weights.registry import architecture, get_record

#: The registered models this script trains (their builders put a decoder on the frozen VGG-19).
MODELS = ("fcn8s-vgg19-camvid", "segnet-vgg19-camvid", "unet-vgg19-camvid")
STRIDE = 32  # the deepest stride of the three networks: frames are padded alike for all


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


def cache_path(cache_dir: Path, split: str, taps: tuple[str, ...], size, limit: int | None = None) -> Path:
    """``train-240x320-relu1_2.relu2_2....pt``: one file per split (``train_flip``: its mirror images), frame size
    and set of encoder taps, so models that read the same maps share it and the others get their own."""
    return Path(cache_dir) / f"{split}-{size[0]}x{size[1]}-{'.'.join(taps)}{f'-limit{limit}' if limit else ''}.pt"


def load_cache(model, record, args, splits=("val", "train")) -> dict:
    """{split: the encoder's maps of ``args.size`` frames}, encoded on first use and memory-mapped after;
    ``train_flip`` is the train split mirrored (frames and labels)."""
    cache_dir = Path(args.cache or Path(args.out) / "features")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = {}
    for split in splits:
        path = cache_path(cache_dir, split, model.encoder.taps, args.size, args.limit)
        if not path.exists():
            data = load_camvid(args.data, split.removesuffix("_flip"), size=tuple(args.size), limit=args.limit)
            if split.endswith("_flip"):
                data.images, data.labels = data.images.flip(-1), data.labels.flip(-1)
            encoded = encode_split(model.encoder, record, data, log=lambda m: print(f"{split}: {m}", flush=True))
            save_atomic(encoded, path)
            del encoded
        cache[split] = torch.load(path, weights_only=True, mmap=True)
    return cache


def gather(splits: list[dict], rows: torch.Tensor, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(maps, int64 labels) of ``rows`` of several cached splits of n frames each, as if concatenated: row r is
    frame r % n of split r // n (with ``[train, train_flip]``, frame i or its mirror image i + n)."""
    n = len(splits[0]["labels"])
    part, frame = rows // n, rows % n
    maps = [torch.empty((len(rows), *t.shape[1:]), dtype=t.dtype) for t in splits[0]["taps"]]
    labels = torch.empty((len(rows), *splits[0]["labels"].shape[1:]), dtype=splits[0]["labels"].dtype)
    for k, split in enumerate(splits):
        chosen = part == k
        if chosen.any():
            for level, cached in zip(maps, split["taps"]):
                level[chosen] = cached[frame[chosen]]
            labels[chosen] = split["labels"][frame[chosen]]
    return [m.to(device).float() for m in maps], labels.to(device).long()


def cached_decode(model, tune_from: str | None = None):
    """maps -> logits from the cached taps: ``model.decode``, after the encoder's layers from ``tune_from`` on
    (when they are fine-tuned) computed again from the cached tap before them."""
    if tune_from is None:
        return model.decode
    return lambda maps: model.decode(model.encoder.forward_from(maps, tune_from))


@torch.no_grad()
def evaluate_decoder(model, cache, index: list[int] | None = None, *, batch_size: int = 8, amp: bool = False,
                     tune_from: str | None = None) -> dict:
    """Metrics of the model (:func:`cached_decode`) on cached taps (the frames ``index``, default all), at the
    cached (padded, void-filled) label resolution."""
    model.eval()
    device = next(model.parameters()).device
    index = torch.arange(len(cache["labels"])) if index is None else torch.as_tensor(index)
    conf = torch.zeros(len(CAMVID_CLASSES), len(CAMVID_CLASSES), dtype=torch.int64)
    decode = cached_decode(model, tune_from)
    for i in range(0, len(index), batch_size):
        maps, labels = gather([cache], index[i : i + batch_size], device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = decode(maps).argmax(1)
        conf += confusion_matrix(pred.cpu(), labels.cpu(), len(CAMVID_CLASSES), VOID)
    return scores(conf)


def trained_state(model) -> dict[str, torch.Tensor]:
    """What trains and ships: every tensor but those of the encoder's frozen layers."""
    frozen = {f"encoder.{k}" for k, p in model.encoder.named_parameters() if not p.requires_grad}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k not in frozen}


def train_frozen(args) -> dict:
    device = training.start(args)
    record = get_record(args.model)
    model = architecture(args.model)  # trainable decoder, frozen encoder
    model.encoder.load_pretrained("vgg19-caffe")
    tuned = model.encoder.unfreeze_from(args.tune_from) if args.tune_from else []
    model.to(device)
    mirrored = ("train_flip",) if args.mirror else ()
    splits = ("train", *mirrored) if args.holdout else ("val", "train", *mirrored)
    cache = load_cache(model, record, args, splits=splits)
    train_cache = cache["train"]
    train_splits = [train_cache, *(cache[m] for m in mirrored)]
    if args.holdout:
        # As in train.py: a held-out training sequence picks the epoch, the val split is scored at release only.
        train_index, selection_index = sequence_index(camvid_names(args.data, "train", args.limit), args.holdout)
        selection_cache = train_cache
    else:
        train_index, selection_cache, selection_index = list(range(len(train_cache["labels"]))), cache["val"], None
    train_index = torch.tensor(train_index)

    tuned_ids = {id(p) for p in tuned}
    decoder = [p for p in model.parameters() if p.requires_grad and id(p) not in tuned_ids]
    groups = [{"params": decoder}] + ([{"params": tuned, "lr_scale": args.tune_lr_scale}] if tuned else [])
    optimizer = torch.optim.Adam(groups, lr=args.lr, weight_decay=args.weight_decay)
    decode = cached_decode(model, args.tune_from)
    weights = enet_class_weights().to(device)
    n, frames = len(train_index), len(train_cache["labels"])
    steps_per_epoch = math.ceil(n / args.batch_size)

    def train_epoch(epoch: int, clock) -> dict:
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = train_index[torch.randperm(n, generator=g)]
        if args.mirror:  # each frame or its mirror image, the row of train_flip
            order = order + frames * (torch.rand(n, generator=g) < 0.5)
        total = 0.0
        for i in range(steps_per_epoch):
            rows = order[i * args.batch_size : (i + 1) * args.batch_size]
            training.set_budget_lr(optimizer, args.lr, epoch * steps_per_epoch + i, args.epochs * steps_per_epoch,
                                   clock(), training.lr_minutes(args.time_limit, args.fixed_schedule))
            maps, target = gather(train_splits, rows, device)
            loss = train_step(decode, optimizer, maps, target, weights, amp=args.amp)
            total += float(loss) * len(rows)
        return {"loss": total / n}

    def evaluate(epoch: int) -> training.Evaluation:
        return selection(evaluate_decoder(model, selection_cache, selection_index, amp=args.amp,
                                          tune_from=args.tune_from))

    # crop and scale: what the card reports of every segmentation run (here the fixed size the frames were encoded at).
    saved_args = {**vars(args), "crop": list(args.size), "scale": args.size[0] / 360}
    result = training.fit(model, optimizer, out=args.out, epochs=args.epochs, train_epoch=train_epoch,
                          evaluate=evaluate, args=saved_args, resume=args.resume,
                          time_limit=args.time_limit, saved_state=trained_state, fixed_schedule=args.fixed_schedule)
    return {"best_mIoU": result["best"]}


def add_arguments(p) -> None:
    training.add_arguments(p, models=MODELS, model_default="fcn8s-vgg19-camvid", epochs=40, batch_size=8, lr=2e-4,
                           weight_decay=1e-4, threads=1)
    p.add_argument("--cache", default=None, help="folder of the encoded taps, shareable between models "
                                                 "(default <out>/features)")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the decoder (CPU or CUDA)")
    p.add_argument("--mirror", action="store_true", help="encode each train frame's mirror image too, and train on "
                                                        "the frame or its mirror (p = 1/2) each epoch")
    p.add_argument("--tune-from", default=None, metavar="LAYER",
                   help="fine-tune the encoder from this VGG-19 layer on (conv5_1: block 5), run on the cached tap")
    p.add_argument("--tune-lr-scale", type=float, default=0.1,
                   help="the fine-tuned encoder layers' learning rate, as a fraction of the decoder's")
