"""Command line: neural style transfer of one content image in the style of one or more others.

    python -m core.style transfer --content photo.jpg --style starry.jpg --size 256 --steps 100 --out out.png
    python -m core.style transfer --content photo.jpg --style a.jpg --style b.jpg --blend 0.7,0.3 --json

``--json`` prints one JSON object at the end: final content, style and total cost, steps,
seconds and the backbone used. Without it, progress is printed every ``--every`` steps.
"""

from __future__ import annotations

import argparse
import json
import sys

from core import runtime
from core.errors import UserError
from core.images import load_image, to_pil, to_tensor
from core.style.backbone import BACKBONES, DEFAULT_BACKBONE, load_backbone
from core.style.costs import STYLE_NORMALIZATIONS
from core.style.features import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, LAYER_NAMES
from core.style.transfer import INITS, OPTIMIZERS, TransferConfig, as_batch, resize_longest, transfer


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.style", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transfer", help="optimise an image G to minimise alpha J_content + beta J_style")
    t.add_argument("--content", required=True, help="content image C")
    t.add_argument("--style", required=True, action="append", help="style image S (repeat for several)")
    t.add_argument("--blend", default=None, help="one weight per style image, e.g. 0.7,0.3 (default: equal)")
    t.add_argument("--out", default=None, help="where to write the result (PNG/JPEG)")
    t.add_argument("--size", type=int, default=256, help="longest side of the result in pixels")
    t.add_argument("--steps", type=int, default=100)
    t.add_argument("--alpha", type=float, default=1.0, help="content weight")
    t.add_argument("--beta", type=float, default=1e3, help="style weight")
    t.add_argument("--style-layers", default=",".join(DEFAULT_STYLE_LAYERS),
                   help="layer[:lambda],... e.g. conv1_1:0.2,conv2_1:0.2 (lambda defaults to 1/number of layers)")
    t.add_argument("--content-layer", default=DEFAULT_CONTENT_LAYER, choices=LAYER_NAMES)
    t.add_argument("--normalization", default="gatys", choices=STYLE_NORMALIZATIONS)
    t.add_argument("--tv", type=float, default=0.0, help="total-variation weight")
    t.add_argument("--init", default="noise", choices=INITS)
    t.add_argument("--optimizer", default="lbfgs", choices=OPTIMIZERS)
    t.add_argument("--lr", type=float, default=0.02, help="Adam's learning rate")
    t.add_argument("--style-scale", type=float, default=1.0)
    t.add_argument("--keep-colors", action="store_true", help="keep the content image's colours")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=BACKBONES)
    t.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA)")
    runtime.add_arguments(t)
    t.add_argument("--every", type=int, default=10, help="print progress every k steps")
    t.add_argument("--json", action="store_true", help="print one JSON summary instead of progress lines")
    return parser.parse_args(argv)


def parse_style_layers(text: str) -> dict[str, float]:
    """``"conv1_1:0.5,conv3_1"`` -> {"conv1_1": 0.5, "conv3_1": 1/2}: unweighted layers share 1 equally."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UserError("Give at least one style layer.")
    weights = {}
    for item in items:
        name, _, weight = item.partition(":")
        if name not in LAYER_NAMES:
            raise UserError(f"Unknown VGG-19 layer '{name}'; choose from {', '.join(LAYER_NAMES)}.")
        weights[name] = float(weight) if weight else 1.0 / len(items)
    return weights


def parse_blend(text: str | None, n_styles: int) -> list[float] | None:
    if text is None:
        return None
    try:
        blend = [float(w) for w in text.split(",")]
    except ValueError:
        raise UserError("--blend takes numbers separated by commas, e.g. 0.7,0.3.") from None
    if len(blend) != n_styles:
        raise UserError(f"--blend has {len(blend)} weights but there are {n_styles} style images.")
    return blend


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        runtime.use(runtime.Settings.from_args(args))  # --weights-dir/--device over CVHUB_*
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    if args.size < 32:
        raise UserError("--size must be at least 32 pixels.")
    config = TransferConfig(
        alpha=args.alpha, beta=args.beta, style_weights=parse_style_layers(args.style_layers),
        content_layer=args.content_layer, normalization=args.normalization, tv_weight=args.tv, init=args.init,
        optimizer=args.optimizer, steps=args.steps, lr=args.lr, blend=parse_blend(args.blend, len(args.style)),
        style_scale=args.style_scale, keep_colors=args.keep_colors, seed=args.seed,
        preview_every=0, compile=args.compile,
    )
    try:
        config.check()
    except ValueError as exc:
        raise UserError(str(exc)[0].upper() + str(exc)[1:] + ".") from None

    def read(path, what):
        loaded = load_image(path, what=what)  # notes only on real changes (huge, RGBA, ...)
        for note in loaded.notes:
            print(f"note: {note}", file=sys.stderr)
        return resize_longest(as_batch(to_tensor(loaded.image)), args.size)

    content = read(args.content, "content image")
    styles = [read(path, f"style image {i + 1}") for i, path in enumerate(args.style)]
    backbone = load_backbone(args.backbone)
    if backbone.note:
        print(f"note: {backbone.note}", file=sys.stderr)
    last = None
    with runtime.gpu_memory_guard():
        for progress in transfer(backbone.features, backbone.normalize, content, styles, config):
            last = progress
            if not args.json and (progress.done or progress.step % max(args.every, 1) == 0):
                print(f"step {progress.step:5d}  content {progress.content:.4g}  style {progress.style:.4g}  "
                      f"total {progress.total:.4g}  {1000 * progress.seconds / progress.step:.1f} ms/step")
    if args.out:
        to_pil(last.image[0]).save(args.out)
    summary = {
        "content_cost": last.content, "style_cost": last.style, "tv_cost": last.tv, "total_cost": last.total,
        "steps": last.step, "seconds": round(last.seconds, 3), "ms_per_step": round(1000 * last.seconds / last.step, 2),
        "backbone": backbone.name, "device": str(next(backbone.features.parameters()).device),
        "size": list(content.shape[-2:]), "normalization": config.normalization, "out": args.out,
    }
    if args.json:
        print(json.dumps(summary))
    elif args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
