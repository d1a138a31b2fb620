"""Evaluate a registered segmentation model on a folder of frames + label maps, print JSON or the lecture's table.

    python -m core.segmentation evaluate --model enet-camvid --images ../shared/data/camvid/val \
        --labels ../shared/data/camvid/valannot [--flip] [--scales 0.75 1 1.25] [--mirror] [--json]

``--flip``, ``--scales``: test-time augmentation (:func:`core.segmentation.predict.segment_logits`); the
result gives the network's ms per frame either way, so the gain in mIoU and its cost come from the same run.
``--mirror`` scores the mirror images of the frames and labels: a model that learnt the left-right layout of
its training streets (one never trained on mirrored frames) loses points there. ``--proxy`` scores the frames
under each of :data:`core.segmentation.shifts.PROXY_SHIFTS` too (other cities' skies, aspect, bonnet, phone) and
prints their mIoU and mean beside the frames' own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import weights
from core import runtime
from core.datasets.camvid import CAMVID_CLASSES, LECTURE_ORDER, VOID
from core.segmentation.data import load_pairs, pair_files
from core.segmentation.metrics import confusion_matrix, scores
from core.segmentation.predict import segment_logits, working_scale
from core.segmentation.shifts import PROXY_SHIFTS, apply_shift


@torch.no_grad()
def evaluate_model(model, record, images, labels, *, batch_size: int = 4, device="cpu", flip: bool = False,
                   scales: tuple[float, ...] = (1.0,), mirror: bool = False) -> dict:
    """uint8 Nx3xHxW frames + NxHxW labels -> :func:`core.segmentation.metrics.scores` (void ignored), ``frames``,
    ``flip``, ``scales``, ``mirror`` and ``ms_per_frame`` (wall time of the predictions, in batches of
    ``batch_size``). ``mirror``: score the mirror images of the frames against the mirrored labels."""
    if mirror:
        images, labels = images.flip(-1), labels.flip(-1)
    num_classes = len(record.class_names) or len(CAMVID_CLASSES)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    scale = working_scale(record.input_size, tuple(images.shape[-2:]))
    seconds = 0.0
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device).float() / 255
        t0 = time.perf_counter()
        pred = segment_logits(model, x, normalize=record.normalize, scale=scale, flip=flip, scales=scales).argmax(1)
        seconds += time.perf_counter() - t0
        conf += confusion_matrix(pred.cpu(), labels[i : i + batch_size], num_classes, VOID)
    result = scores(conf)
    result["classes"] = list(record.class_names or CAMVID_CLASSES)
    result["frames"] = len(images)
    result["flip"] = flip
    result["scales"] = list(scales)
    result["mirror"] = mirror
    result["ms_per_frame"] = round(1000 * seconds / max(1, len(images)), 1)
    return result


#: The fixed set a release scores its file on and the tests score it on again: the first frames of CamVid val,
#: enough to see a lost point of mIoU (a model run at the wrong scale loses eight) in seconds.
QUALITY_CHECK_FRAMES = 12


def quality_check_score(model, record, val) -> dict:
    """``model``'s mIoU on the first :data:`QUALITY_CHECK_FRAMES` frames of ``val`` (a SegmentationSet)."""
    n = QUALITY_CHECK_FRAMES
    result = evaluate_model(model, record, val.images[:n], val.labels[:n])
    return {"split": "CamVid val", "frames": result["frames"], "mIoU": round(result["mIoU"], 4)}


def evaluate_folders(name: str, image_dir, label_dir, *, device="cpu", limit: int | None = None,
                     weights_dir=None, flip: bool = False, scales: tuple[float, ...] = (1.0,),
                     mirror: bool = False, proxy: bool = False) -> dict:
    """Load the registered model ``name`` (its files from ``weights_dir`` first) and score it on the frames of
    ``image_dir`` against ``label_dir`` (``proxy``: :func:`proxy_scores` instead)."""
    record = weights.get_record(name)
    model = weights.create(name, device=device, weights_dir=weights_dir)
    pairs = pair_files(Path(image_dir), Path(label_dir))
    if limit:
        pairs = pairs[:limit]
    data = load_pairs(pairs)
    if proxy:
        return {"model": name, "frames": len(data), **proxy_scores(model, record, data.images, data.labels,
                                                                   device=device)}
    result = evaluate_model(model, record, data.images, data.labels, device=device, flip=flip, scales=scales,
                            mirror=mirror)
    result["model"] = name
    return result


def proxy_scores(model, record, images, labels, *, device="cpu") -> dict:
    """mIoU of ``model`` on the frames as they are (``clean``) and under each proxy shift, and the shifts' mean
    (``proxy_mean``): the project's stand-in for streets of other cities."""
    result = {"clean": evaluate_model(model, record, images, labels, device=device)["mIoU"]}
    for name in PROXY_SHIFTS:
        shifted = apply_shift(name, images, labels)
        result[name] = evaluate_model(model, record, *shifted, device=device)["mIoU"]
    result["proxy_mean"] = sum(result[name] for name in PROXY_SHIFTS) / len(PROXY_SHIFTS)
    return {k: round(v, 4) for k, v in result.items()}


def format_table(result: dict) -> str:
    """One row laid out like the lecture's CamVid table.

    Per-class accuracy in its column order, class avg., class IoU.
    """
    acc = dict(zip(result["classes"], result["class_accuracy"]))
    iou = dict(zip(result["classes"], result["iou"]))
    head = ["Model", *LECTURE_ORDER, "class avg.", "class IoU"]
    acc_row = [result.get("model", ""), *(f"{100 * acc[c]:.1f}" for c in LECTURE_ORDER),
               f"{100 * result['class_avg']:.1f}", f"{100 * result['mIoU']:.1f}"]
    iou_row = ["  (IoU)", *(f"{100 * iou[c]:.1f}" for c in LECTURE_ORDER), "", ""]
    widths = [max(len(h), len(a), len(b)) for h, a, b in zip(head, acc_row, iou_row)]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in (head, acc_row, iou_row)]
    scales = result.get("scales", [1.0])
    lines.append(f"global accuracy {100 * result['global_accuracy']:.1f} over {result['frames']}"
                 f"{' mirrored' if result.get('mirror') else ''} frames (void ignored)"
                 f"{', test-time flip' if result.get('flip') else ''}"
                 f"{', scales ' + ' '.join(f'{s:g}' for s in scales) if len(scales) > 1 else ''}; "
                 f"{result['ms_per_frame']:.0f} ms per frame")
    return "\n".join(lines)


def main(args) -> int:
    settings = runtime.settings()
    result = evaluate_folders(args.model, args.images, args.labels, device=runtime.pick_device(settings.device),
                              limit=args.limit, weights_dir=settings.weights_dir, flip=args.flip,
                              scales=tuple(args.scales), mirror=args.mirror, proxy=args.proxy)
    if args.json or args.proxy:
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="a registered segmentation model (see `list`)")
    p.add_argument("--images", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--flip", action="store_true", help="test-time flip: average the frame's and its mirror's logits")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], metavar="S",
                   help="test-time scales: average the logits of the frame run at each multiple of its working scale")
    p.add_argument("--mirror", action="store_true", help="score the mirror images of the frames (labels mirrored)")
    p.add_argument("--proxy", action="store_true",
                   help="also score the frames under the proxy shifts of other cities' streets (JSON output)")
    runtime.add_arguments(p)
    p.add_argument("--limit", type=int, default=None)
