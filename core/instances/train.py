"""Train the CamVid Mask R-CNN's heads on the frozen VGG-19: encode the frames once, then train RPN, box and mask heads.

    python -m core.instances train --model maskrcnn-vgg19-camvid --data ../shared/data/camvid \
        --weights-dir ../shared/weights --epochs 30 --threads 2

A VGG-19 forward to relu4_4 costs ~1.9 s per frame at the detector's 540 px short side on a 2-core CPU, so each
frame (and its mirror image) is encoded once into ``<out>/features.pt`` (fp16, one entry per split, mirroring and
short side, reused on resume); an epoch then costs only the trained layers. Each epoch sees every train frame once,
mirrored with probability 1/2; with ``--sizes 360 540`` the frames are encoded with their short side scaled to each
size, and each batch is drawn at one of them (scale augmentation from cached features: small objects grow with the
image); ``--eval-size`` is the short side the selection frames are scored at. SGD with momentum, linear warm-up
then cosine decay; box and mask AP on val (or, with ``--holdout``, on a held-out training sequence) every
``--eval-every`` epochs, the best epoch chosen on the mean mask AP50 over the three classes (with
``--fixed-schedule``: none, the last epoch, val scored once after it). Resume, log and checkpoints:
:func:`core.training.fit`; a rerun of the same command always continues from ``last.pt``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import resize_boxes

from core import training
from core.checkpoints import save_atomic
from core.datasets.camvid import INSTANCE_CLASSES
from core.instances.camvid import instances_from_labels
from core.instances.evaluate import at_short_side, coco_ap
from core.instances.maskrcnn import ANCHOR_SIZES, ASPECT_RATIOS, SHORT_SIDE, trained_state
from core.segmentation.data import camvid_names, load_camvid, sequence_index
from weights.registry import architecture

#: The registered models this script trains.
MODELS = ("maskrcnn-vgg19-camvid",)


@torch.no_grad()
def encode_frames(model, images: torch.Tensor, *, batch_size: int = 4,
                  log=print) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """uint8 Nx3xHxW frames -> the frozen encoder's features (fp16, kept on the CPU), through the detector's
    own transform, and each frame's size after that transform's resize."""
    model.eval()
    device = next(model.parameters()).device
    out, sizes, t0 = [], [], time.time()
    for i in range(0, len(images), batch_size):
        batch = [x.to(device).float() / 255 for x in images[i : i + batch_size]]
        image_list, _ = model.transform(batch)
        out.append(model.backbone.encode(image_list.tensors).half().cpu())
        sizes += [tuple(size) for size in image_list.image_sizes]
        log(f"encoded {min(i + batch_size, len(images))}/{len(images)} frames, {time.time() - t0:.0f} s")
    return torch.cat(out), sizes


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
def evaluate_cached(model, split: dict, index: list[int] | None = None, batch_size: int = 8) -> dict:
    """Box and mask AP on the frames ``index`` (default all) of a cached split, the detections taken back to the
    label maps' size (as the detector's own postprocessing does for any input)."""
    model.eval()
    device = next(model.parameters()).device
    index = list(range(len(split["encoded"]))) if index is None else index
    predictions = []
    for i in range(0, len(index), batch_size):
        idx = index[i : i + batch_size]
        sizes = [split["sizes"][j] for j in idx]
        detections = heads_forward(model, split["encoded"][idx].to(device), sizes)
        detections = model.transform.postprocess(detections, sizes, [tuple(split["labels"][j].shape) for j in idx])
        predictions += [{k: v.cpu() for k, v in d.items()} for d in detections]
    return coco_ap(predictions, [split["targets"][j] for j in index], INSTANCE_CLASSES)


def _load_split(model, args, split: str, flip: bool, short_side: int, log) -> dict:
    data = load_camvid(args.data, split, limit=args.limit)
    images, labels = (data.images.flip(-1), data.labels.flip(-1)) if flip else (data.images, data.labels)
    with at_short_side(model, short_side):
        encoded, sizes = encode_frames(model, images, log=log)
    return {"encoded": encoded, "labels": labels, "sizes": sizes}


def _cache_key(split: str, flip: bool, short_side: int) -> str:
    """"train@360", "train_flip@540", "val@540": a split, mirrored or not, encoded at a short side."""
    return f"{split}{'_flip' if flip else ''}@{short_side}"


def _with_targets(split: dict) -> dict:
    """Targets at the label maps' size (:func:`targets_at` scales them to the frames' encoded size)."""
    return {**split, "targets": [instances_from_labels(y) for y in split["labels"]]}


def targets_at(target: dict, label_size: tuple[int, int], size: tuple[int, int]) -> dict:
    """A target of a ``label_size`` label map as the detector's transform makes it for a frame resized to ``size``:
    boxes scaled, masks resized nearest (torchvision's ``resize_boxes`` and mask interpolation)."""
    if tuple(label_size) == tuple(size):
        return target
    masks = target["masks"]
    resized = (F.interpolate(masks[:, None].float(), size=size)[:, 0].byte() if len(masks)
               else masks.new_zeros(0, *size))
    return {**target, "boxes": resize_boxes(target["boxes"], label_size, size), "masks": resized}


def selection_score(ap: dict) -> float:
    """Mean mask AP50 over the classes that have ground truth (what ``best.pt`` is chosen on)."""
    values = [c["AP50"] for c in ap["segm"]["per_class"].values() if c["AP50"] is not None]
    return sum(values) / len(values)


def anchor_overrides(args: dict) -> dict:
    """The builder arguments a trial's ``--anchor-sizes`` / ``--aspect-ratios`` replace (none: the detector's own)."""
    return {k: tuple(args[k]) for k in ("anchor_sizes", "aspect_ratios") if args.get(k)}


def train(args) -> dict:
    device = training.start(args)
    model = architecture(args.model, **anchor_overrides(vars(args)))
    model.backbone.encoder.load_pretrained("vgg19-caffe")
    model.to(device)

    sizes, eval_size = args.sizes or [SHORT_SIDE], args.eval_size or SHORT_SIDE
    cache_path = Path(args.out) / "features.pt"
    cache = torch.load(cache_path, weights_only=True) if cache_path.exists() else {}
    selection = ("train" if args.holdout else "val", False, eval_size)  # (split, mirrored, short side)
    wanted = [*(("train", flip, s) for s in sizes for flip in (False, True)), selection]
    splits = {}  # each cached split once, with its targets, however many roles it plays
    for split, flip, s in wanted:
        key = _cache_key(split, flip, s)
        if key not in cache:
            cache[key] = _load_split(model, args, split, flip, s, lambda m, k=key: print(f"{k}: {m}", flush=True))
            save_atomic(cache, cache_path)
        if key not in splits:
            splits[key] = _with_targets(cache[key])
    # versions[size][mirrored]: every train frame, encoded at each training size, as it is and mirrored.
    versions = [[splits[_cache_key("train", flip, s)] for flip in (False, True)] for s in sizes]
    selection_split = splits[_cache_key(*selection)]
    if args.holdout:
        # As the segmentation trainers: a held-out training sequence (unmirrored) picks the epoch; val is for release.
        train_index, selection_index = sequence_index(camvid_names(args.data, "train", args.limit), args.holdout)
    else:
        train_index, selection_index = list(range(len(versions[0][0]["labels"]))), None

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    n = len(train_index)
    steps_per_epoch = math.ceil(n / args.batch_size)
    total_steps = args.epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (0.1 + 0.9 * step / args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))

    def train_epoch(epoch: int, clock) -> dict:
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order, mirrored = torch.randperm(n, generator=g), torch.rand(n, generator=g) < 0.5
        # One size a batch (the cached features of one batch must stack); with one size, the draw changes nothing.
        size_of_batch = torch.randint(len(sizes), (steps_per_epoch,), generator=g)
        sums: dict[str, float] = {}
        for b in range(steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + b)
            at_size = versions[int(size_of_batch[b])]
            picks = [(at_size[int(mirrored[k])], train_index[k])
                     for k in order[b * args.batch_size : (b + 1) * args.batch_size].tolist()]
            encoded = torch.stack([v["encoded"][i] for v, i in picks]).to(device)
            targets = [{name: t.to(device) for name, t in
                        targets_at(v["targets"][i], v["labels"][i].shape, v["sizes"][i]).items()} for v, i in picks]
            losses = heads_forward(model, encoded, [v["sizes"][i] for v, i in picks], targets)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        return {**{k: round(v / steps_per_epoch, 4) for k, v in sums.items()},
                "lr": round(lr_at((epoch + 1) * steps_per_epoch), 6)}

    def evaluate(epoch: int) -> training.Evaluation | None:
        if (epoch + 1) % args.eval_every and epoch + 1 != args.epochs:
            return None
        ap = evaluate_cached(model, selection_split, selection_index)
        score = selection_score(ap)
        return training.Evaluation(score=score, metrics=ap,
                                   log={"selection_mask_AP50_mean": round(score, 4), "selection": ap})

    # A rerun of the same command continues (this trainer has always resumed; its card's command says so).
    result = training.fit(model, optimizer, out=args.out, epochs=args.epochs, train_epoch=train_epoch,
                          evaluate=evaluate, args=vars(args), resume=True, time_limit=args.time_limit,
                          saved_state=trained_state, fixed_schedule=args.fixed_schedule)
    return {"best_mean_mask_AP50": result["best"]}


def add_arguments(p) -> None:
    training.add_arguments(p, models=MODELS, model_default="maskrcnn-vgg19-camvid", epochs=30, batch_size=4, lr=0.01,
                           weight_decay=1e-4, threads=2, resume_flag=False)
    p.add_argument("--warmup", type=int, default=100, help="steps of linear warm-up")
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=None, metavar="SHORT_SIDE",
                   help=f"train at these short sides, one drawn per batch (default: the detector's own, {SHORT_SIDE})")
    p.add_argument("--eval-size", type=int, default=None, metavar="SHORT_SIDE",
                   help=f"score the selection frames at this short side (default: the detector's own, {SHORT_SIDE})")
    p.add_argument("--anchor-sizes", type=int, nargs="+", default=None, metavar="PX",
                   help=f"the RPN's anchor sizes (default: the detector's own, {' '.join(map(str, ANCHOR_SIZES))})")
    p.add_argument("--aspect-ratios", type=float, nargs="+", default=None, metavar="H/W",
                   help=f"the RPN's anchor aspect ratios, height over width (default: the detector's own, "
                        f"{' '.join(map(str, ASPECT_RATIOS))})")
