"""ms per frame of the segmentation networks at the lecture's sizes, eager fp32 vs optimised variants.

    python bench/segmentation.py [--device cpu|cuda] [--models enet-camvid segnet-vgg19-camvid ...]
        [--sizes 480x320 640x360 1280x720 1920x1080] [--batches 1 8]
        [--variants eager channels_last half compile cudagraphs] [--repeats 5] [--threads N] [--json out.json]

Each network runs at the input resolution (padded to its stride, as the lecture's table
measures), with random weights when none are shipped: speed does not depend on the values.
Variants: ``eager`` fp32; ``channels_last`` NHWC memory format; ``half`` fp16 on CUDA, bf16
autocast on CPU (+ channels_last); ``compile`` torch.compile (+ channels_last, half on CUDA);
``cudagraphs`` torch.compile mode="reduce-overhead" (CUDA graphs, fp16, CUDA only).
The lecture's table (Titan X, batch 1): ENet 7 / 21 / 46 ms at 640x360 / 1280x720 / 1920x1080,
SegNet 69 / 289 / 637 ms; printed beside the results as the "x faster" ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import weights  # noqa: E402
from core.segmentation.padding import run_padded  # noqa: E402
from core.segmentation.speed import ms_per_frame, parameter_count  # noqa: E402

#: The lecture's Titan X numbers, ms per frame at batch 1.
LECTURE_MS = {
    "enet-camvid": {"640x360": 7, "1280x720": 21, "1920x1080": 46},
    # The lecture's SegNet has a VGG-16 encoder; the project's has VGG-19's (about 20 % more work).
    "segnet-vgg19-camvid": {"640x360": 69, "1280x720": 289, "1920x1080": 637},
}


def build(name: str, device: torch.device) -> torch.nn.Module:
    record = weights.get_record(name)
    torch.manual_seed(0)
    return weights.create(name, pretrained=weights.is_available(record), device=device)


def variant_fn(model: torch.nn.Module, variant: str, device: torch.device):
    """(callable on a Bx3xHxW fp32 tensor, input transform) for a variant, or None when it does not apply."""
    cuda = device.type == "cuda"
    if variant == "eager":
        return (lambda x: run_padded(model, x)), (lambda x: x)
    if variant in ("cudagraphs",) and not cuda:
        return None
    m = model.to(memory_format=torch.channels_last)
    to_cl = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731
    if variant == "channels_last":
        return (lambda x: run_padded(m, x)), to_cl
    half = torch.float16 if cuda else torch.bfloat16
    if variant == "half":
        if cuda:
            mh = m.half()
            return (lambda x: run_padded(mh, x)), (lambda x: to_cl(x).half())
        return (lambda x: _autocast(m, x, half)), to_cl
    if variant in ("compile", "cudagraphs"):
        mc = m.half() if cuda else m
        compiled = torch.compile(mc, mode="reduce-overhead" if variant == "cudagraphs" else "max-autotune-no-cudagraphs"
                                 if cuda else None, dynamic=False)
        return (lambda x: run_padded(compiled, x)), ((lambda x: to_cl(x).half()) if cuda else to_cl)
    raise ValueError(f"unknown variant {variant}")


def _autocast(model, x, dtype):
    with torch.autocast(x.device.type, dtype=dtype):
        return run_padded(model, x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+",
                   default=["enet-camvid", "segnet-vgg19-camvid", "fcn8s-vgg19-camvid", "unet-vgg19-camvid"])
    p.add_argument("--sizes", nargs="+", default=["480x320", "640x360", "1280x720", "1920x1080"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--variants", nargs="+", default=["eager", "channels_last", "half", "compile"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    rows = []
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    print(f"{'model':18} {'size':>9} {'batch':>5} {'variant':>14} {'ms/frame':>9} {'vs eager':>8} {'vs lecture':>10}")
    for name in args.models:
        model = build(name, device)
        params = parameter_count(model)
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            for batch in args.batches:
                x = torch.rand(batch, 3, h, w, device=device)
                eager_ms = None
                for variant in args.variants:
                    made = variant_fn(model, variant, device)
                    if made is None:
                        continue
                    fn, prep = made
                    try:
                        with torch.no_grad():
                            compiled = "compile" in variant or variant == "cudagraphs"
                            ms = ms_per_frame(fn, prep(x), warmup=args.warmup + (2 if compiled else 0),
                                              repeats=args.repeats)
                    except Exception as exc:  # an op without a kernel for this dtype: report, go on
                        print(f"{name:18} {size:>9} {batch:>5} {variant:>14} failed: {type(exc).__name__}: {exc}"[:200])
                        continue
                    finally:
                        model.to(memory_format=torch.contiguous_format).float()
                    eager_ms = ms if variant == "eager" else eager_ms
                    lecture = LECTURE_MS.get(name, {}).get(size) if batch == 1 else None
                    row = {"model": name, "params": params, "size": size, "batch": batch, "variant": variant,
                           "device": str(device), "ms_per_frame": round(ms, 3),
                           "speedup_vs_eager": round(eager_ms / ms, 2) if eager_ms else None,
                           "x_faster_than_lecture": round(lecture / ms, 1) if lecture else None}
                    rows.append(row)
                    print(f"{name:18} {size:>9} {batch:>5} {variant:>14} {ms:9.2f} "
                          f"{row['speedup_vs_eager'] or '':>8} {row['x_faster_than_lecture'] or '':>10}", flush=True)
                del x
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
