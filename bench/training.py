"""Seconds per training step of a trainer's network, eager vs Inductor-compiled (``train --compile``), in one run.

    python bench/training.py [--model enet-camvid] [--batch-size 4] [--crop 360 480] [--amp] [--steps 6]
        [--threads 2] [--json out.json]

One step is :func:`core.segmentation.train.train_step`, what the trainer does per batch: forward (bf16 autocast
with ``--amp``), class-weighted cross-entropy, backward, Adam. Random frames and labels: the time does not depend
on them. The compiled variant's first two steps (which compile) are timed apart from the steady ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.datasets.camvid import CAMVID_CLASSES  # noqa: E402
from core.segmentation.data import enet_class_weights  # noqa: E402
from core.segmentation.train import train_step  # noqa: E402
from weights.registry import architecture  # noqa: E402


def time_steps(name: str, compiled: bool, *, batch_size: int, crop: tuple[int, int], amp: bool, steps: int) -> dict:
    torch.manual_seed(0)
    model = architecture(name).train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    weights = enet_class_weights()
    x = torch.randn(batch_size, 3, *crop)
    y = torch.randint(0, len(CAMVID_CLASSES), (batch_size, *crop))

    def step() -> None:
        train_step(forward, optimizer, x, y, weights, amp=amp)

    t0 = time.perf_counter()
    step(), step()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"variant": "compiled" if compiled else "eager", "first_two_s": round(first, 1),
            "s_per_step": round((time.perf_counter() - t0) / steps, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="enet-camvid")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    p.add_argument("--amp", action="store_true", help="bf16 autocast, as train --amp on a CPU")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [time_steps(args.model, compiled, batch_size=args.batch_size, crop=tuple(args.crop), amp=args.amp,
                       steps=args.steps) for compiled in (False, True)]
    eager, compiled = rows
    print(f"{args.model}, batch {args.batch_size} at {args.crop[1]}x{args.crop[0]}, {'bf16' if args.amp else 'fp32'}, "
          f"{args.threads} threads")
    for row in rows:
        print(f"  {row['variant']:>8}: {row['s_per_step']:.3f} s per step (first two steps {row['first_two_s']} s)")
    print(f"  compiled is {eager['s_per_step'] / compiled['s_per_step']:.2f}x faster per step")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
