"""The app's models on each engine of core.engines beside PyTorch fp32, in one run: speed and the same answers.

    python bench/engines.py --weights-dir ../shared/weights [--models enet-camvid fcn8s-vgg19-camvid ...]
        [--sizes working 640x360] [--rounds 5] [--val-frames 101] [--json out.json]

For each model and size, every engine this host supports runs interleaved with fp32 eager (``--rounds`` rounds
of one call each; a busy host slows all alike, so read the ratios). Answers, on real CamVid val frames:
segmentation gives the share of pixel labels equal to fp32's and the val mIoU over ``--val-frames`` frames
(the split that picked the shipped epochs: a check that the answers hold, not a generalisation figure); Mask
R-CNN gives whether the detections scoring >= 0.5 on two frames are the same (labels, box IoU > 0.9, as sets)
and, with ``--val-frames``, box and mask AP50 over that many frames. "listed" says whether the model's record
serves it (it keeps the answers: >= 99.5 % of labels; for Mask R-CNN, AP50 within half a point of fp32's);
``auto`` picks among the listed by the same kind of timing, once per host.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import weights  # noqa: E402
from core import engines, runtime  # noqa: E402
from core.instances.evaluate import evaluate_model as evaluate_instances  # noqa: E402
from core.segmentation.data import load_pairs, pair_files  # noqa: E402
from core.segmentation.evaluate import evaluate_model  # noqa: E402
from core.segmentation.padding import run_padded  # noqa: E402
from core.segmentation.predict import segment_as_recorded  # noqa: E402

DEFAULT_MODELS = ["enet-camvid", "fcn8s-vgg19-camvid", "segnet-vgg19-camvid", "unet-vgg19-camvid",
                  "maskrcnn-vgg19-camvid"]


def builds(name: str, device: torch.device) -> dict[str, torch.nn.Module]:
    """fp32 eager and each engine this host supports (listed by the record or not), each its own model."""
    out = {"eager": weights.create(name, device=device)}
    for engine in engines.ENGINES[1:]:
        if engines.supported(engine, device):
            try:
                out[engine] = engines.install(name, weights.create(name, device=device), engine)
            except Exception as exc:  # noqa: BLE001 (a converter that cannot take this network: report it)
                print(f"{name}: {engine} failed to build: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
    return out


def speed_row(models: dict, x: torch.Tensor, call, rounds: int) -> dict[str, float]:
    _, ms = engines.fastest({e: (lambda t, m=m: call(m, t)) for e, m in models.items()}, x, rounds=rounds)
    return ms


def segmentation_answers(name: str, models: dict, frames: torch.Tensor, val_frames) -> dict[str, dict]:
    record = weights.get_record(name)
    expected = segment_as_recorded(models["eager"], record, frames)
    out = {}
    for engine, model in models.items():
        same = (segment_as_recorded(model, record, frames) == expected).float().mean().item()
        row = {"labels_equal": round(same, 5)}
        if val_frames is not None:
            row["val_mIoU"] = round(evaluate_model(model, record, val_frames.images, val_frames.labels)["mIoU"], 4)
        out[engine] = row
    return out


def same_detections(expected: dict, got: dict, iou: float = 0.9) -> bool:
    """The same detections scoring >= 0.5: as many, and each one's box has a box of the same class in the other set at
    IoU > ``iou``. As sets: two detections with near-equal scores may come out in either order."""
    ke, kg = expected["scores"] >= 0.5, got["scores"] >= 0.5
    if ke.sum() != kg.sum():
        return False
    if not ke.any():
        return True
    same_class = expected["labels"][ke][:, None] == got["labels"][kg][None, :]
    overlap = box_iou(expected["boxes"][ke], got["boxes"][kg]) * same_class
    return bool((overlap.max(1).values > iou).all() and (overlap.max(0).values > iou).all())


def instance_answers(name: str, models: dict, frames: torch.Tensor, val_frames) -> dict[str, dict]:
    with torch.no_grad():
        expected = models["eager"](list(frames))
    out = {}
    for engine, model in models.items():
        with torch.no_grad():
            got = model(list(frames))
            row = {"same_detections": all(same_detections(e, g) for e, g in zip(expected, got)),
                   "detections": int(sum((g["scores"] >= 0.5).sum() for g in got))}
            if val_frames is not None:  # a detection that moves on one frame may not matter to the score
                result = evaluate_instances(model, weights.get_record(name).class_names, val_frames.images,
                                            val_frames.labels)
                row.update(val_mask_AP50=round(result["segm"]["AP50"], 4),
                           val_box_AP50=round(result["bbox"]["AP50"], 4))
        out[engine] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    runtime.add_arguments(p)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--sizes", nargs="+", default=["working", "640x360"],
                   help="WxH, or 'working': the size the app runs the model at (its record's input size)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=8, help="val frames for the label / detection comparison")
    p.add_argument("--val-frames", type=int, default=0, help="val frames for mIoU per engine (0: skip)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "camvid"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    runtime.use(runtime.Settings.from_args(args))
    device = runtime.pick_device()
    camvid = Path(args.data)
    pairs = pair_files(camvid / "val", camvid / "valannot")
    frames = load_pairs(pairs[: args.frames]).images.float() / 255
    val = load_pairs(pairs[: args.val_frames]) if args.val_frames else None
    print(f"host: {engines._host_key()}; bf16 in hardware: {engines.cpu_has_bf16()}; threads {torch.get_num_threads()}")
    rows = []
    for name in args.models:
        record = weights.get_record(name)
        if not weights.is_available(record):
            print(f"{name}: weights not here, skipped")
            continue
        models = builds(name, device)
        instances = record.task == "instances"
        answers = (instance_answers(name, models, frames[:2], val) if instances
                   else segmentation_answers(name, models, frames, val))
        for size in args.sizes:
            h, w = record.input_size if size == "working" else tuple(int(v) for v in size.split("x"))[::-1]
            x = F.interpolate(frames[:1], size=(h, w), mode="bilinear", align_corners=False).to(device)
            if instances:
                call = lambda m, t: m(list(t))  # noqa: E731 (the detector takes a list of images)
            else:
                call = lambda m, t: run_padded(m, record.normalize(t))  # noqa: E731
            with torch.no_grad():
                ms = speed_row(models, x, call, args.rounds)
            for engine, t in ms.items():
                row = {"model": name, "size": f"{w}x{h}", "engine": engine, "listed": engine in record.engines,
                       "ms": round(t, 1), "speedup": round(ms["eager"] / t, 2), **answers[engine]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
