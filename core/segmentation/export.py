"""Turn a training checkpoint into the shipped weights: fp16 safetensors + the numbers for the model card.

    python -m core.segmentation export --checkpoint runs/enet/best.pt --out weights/enet-camvid.safetensors
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch


def export_fp16(checkpoint, out) -> dict:
    """best.pt -> fp16 safetensors (BN statistics and PReLU slopes included); returns sha256, size, val metrics."""
    from safetensors.torch import save_file

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in ckpt["model"].items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    digest = hashlib.sha256(Path(out).read_bytes()).hexdigest()
    val = ckpt.get("val", {})
    return {"out": str(out), "sha256": digest, "bytes": Path(out).stat().st_size, "epoch": ckpt.get("epoch"),
            "val_mIoU": val.get("mIoU"), "val_iou": val.get("iou"), "val_class_avg": val.get("class_avg"),
            "val_global": val.get("global_accuracy"), "args": ckpt.get("args")}


def main(args) -> int:
    print(json.dumps(export_fp16(args.checkpoint, args.out), indent=1))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
