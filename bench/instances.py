"""ms per image of Mask R-CNN, eager fp32 vs optimised variants, and whether the optimised detections stay the same.

    python bench/instances.py [--device cpu|cuda] [--models maskrcnn-vgg19-camvid maskrcnn-r50-fpn-v2-coco]
        [--sizes 480x360 1216x800] [--batches 1 4] [--variants eager channels_last half]
        [--repeats 3] [--threads N] [--json out.json]

Input: a real CamVid val frame (from ../shared, resized to each size) so that the detector
finds real objects. Each registered model runs with its weights when they are here, else with
random weights (torchvision's COCO files cannot be downloaded on the build machine): then the
row times the architecture, and its detections mean nothing. Variants: ``eager`` fp32;
``channels_last``; ``half`` fp16 on CUDA, bf16 on CPU, autocast over the whole detector. The
engines the app serves the project's model with (bf16 or OpenVINO for its frozen encoder, heads in
fp32) are compared in ``bench/engines.py``. For each variant: ms per
image and, against eager, the largest box shift (px) and the smallest mask IoU over the
detections scoring >= 0.5 (the issue's bar: boxes within 1 px, mask IoU >= 0.98).
The lecture quotes Mask R-CNN at about 5 images per second (200 ms).
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
from core import runtime  # noqa: E402
from core.images import load_image, to_tensor  # noqa: E402
from core.segmentation.speed import ms_per_frame  # noqa: E402


def build(name: str, device: torch.device):
    torch.manual_seed(0)
    trained = weights.is_available(weights.get_record(name))
    return weights.create(name, pretrained=trained, device=device), trained


def frame(size: tuple[int, int]) -> torch.Tensor:
    """A CamVid val frame resized to (w, h), 3xHxW in [0, 1]."""
    path = sorted((REPO.parent / "shared" / "data" / "camvid" / "val").iterdir())[40]
    x = to_tensor(load_image(path).image)[None]
    return F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False)[0].clamp(0, 1)


def run_variant(model, variant: str, images: list[torch.Tensor]):
    """One batched forward; for ``channels_last`` the caller has converted the model's weights (convs then
    compute in NHWC: the detector batches the images itself, so the inputs cannot be converted)."""
    cuda = images[0].is_cuda
    if variant in ("eager", "channels_last"):
        return model(images)
    if variant == "half":
        with torch.autocast(images[0].device.type, dtype=torch.float16 if cuda else torch.bfloat16):
            return model(images)
    raise ValueError(f"unknown variant {variant}")


def agreement(reference: dict, other: dict, score: float = 0.5) -> tuple[float, float]:
    """(largest box shift in px, smallest mask IoU) of the confident reference detections, matched by best box IoU."""
    keep = reference["scores"] >= score
    ref_boxes, ref_masks = reference["boxes"][keep], reference["masks"][keep, 0] > 0.5
    if len(ref_boxes) == 0:
        return 0.0, 1.0
    if len(other["boxes"]) == 0:
        return float("inf"), 0.0
    match = box_iou(ref_boxes, other["boxes"].float()).argmax(1)
    shift = (ref_boxes - other["boxes"][match].float()).abs().max().item()
    masks = other["masks"][match, 0].float() > 0.5
    inter = (ref_masks & masks).sum((1, 2)).float()
    union = (ref_masks | masks).sum((1, 2)).clamp(min=1).float()
    return shift, (inter / union).min().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=["maskrcnn-vgg19-camvid"])
    p.add_argument("--sizes", nargs="+", default=["480x360", "1216x800"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    p.add_argument("--variants", nargs="+", default=["eager", "channels_last", "half"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--weights-dir", default=str(REPO.parent / "shared" / "weights"))
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    runtime.use(runtime.Settings.from_env(weights_dir=args.weights_dir))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}", flush=True)
    print(f"{'model':24} {'size':>9} {'batch':>5} {'variant':>14} {'ms/image':>9} {'vs eager':>8} "
          f"{'box shift':>9} {'mask IoU':>8} {'found':>5}")
    rows = []
    for name in args.models:
        model, trained = build(name, device)
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            image = frame((w, h)).to(device)
            for batch in args.batches:
                images = [image] * batch
                with torch.inference_mode():
                    reference = run_variant(model, "eager", images)[0]
                eager_ms = None
                for variant in args.variants:
                    model.to(memory_format=torch.channels_last if variant != "eager" else torch.contiguous_format)
                    with torch.inference_mode():
                        ms = ms_per_frame(lambda _: run_variant(model, variant, images), torch.empty(batch, 1, 1),
                                          warmup=args.warmup, repeats=args.repeats)
                        out = run_variant(model, variant, images)[0]
                    shift, iou = agreement(reference, {k: v.float() for k, v in out.items()})
                    eager_ms = ms if variant == "eager" else eager_ms
                    found = int((reference["scores"] >= 0.5).sum())
                    row = {"model": name, "trained": trained, "size": size, "batch": batch, "variant": variant,
                           "device": str(device), "ms_per_image": round(ms, 1),
                           "speedup_vs_eager": round(eager_ms / ms, 2) if eager_ms else None,
                           "box_shift_px": round(shift, 2), "min_mask_iou": round(iou, 3), "found": found}
                    rows.append(row)
                    print(f"{name:24} {size:>9} {batch:>5} {variant:>14} {ms:9.1f} {row['speedup_vs_eager'] or 1:8.2f} "
                          f"{shift:9.2f} {iou:8.3f} {found:>5}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
