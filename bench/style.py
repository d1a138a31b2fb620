"""Style transfer speed: the PyTorch tutorial's recipe vs the project's, fp32 and bf16, same process, same images.

    python bench/style.py --weights-dir ../shared/weights [--size 256] [--steps 100] [--device auto] [--compile]

Reference: the PyTorch neural-style tutorial as written: fp32, eager, VGG-19 cut after the
deepest layer in use, weights without gradients, style Grams and content target computed once,
pixels clamped to [0, 1] in the closure, one L-BFGS call doing all the steps. Ours:
:func:`core.style.transfer` in fp32 and under bf16 autocast (what the app runs on a host with bf16
hardware), channels_last, optional ``torch.compile``. All minimise the same J (Gatys normalisation,
alpha 1, beta 1e3) from the same noise; every final image is scored by the same fp32 evaluation.
Prints one line per recipe and a JSON summary with the ratios. Images: ../shared/images (not in the
repo); scikit-image's if absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import skimage.data
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import weights  # noqa: E402
from core import engines, runtime  # noqa: E402
from core.images import load_image, to_tensor  # noqa: E402
from core.style.costs import content_cost, gram_matrix, rescale_gram, style_cost  # noqa: E402
from core.style.features import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, relu_index  # noqa: E402
from core.style.transfer import TransferConfig, as_batch, initial_image, resize_longest, transfer  # noqa: E402

ALPHA, BETA = 1.0, 1e3
LAMBDA = {layer: 1.0 / len(DEFAULT_STYLE_LAYERS) for layer in DEFAULT_STYLE_LAYERS}
SHARED_IMAGES = REPO.parent / "shared" / "images"


def images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    content_path, style_path = SHARED_IMAGES / "content" / "tubingen.jpg", SHARED_IMAGES / "style" / "starry_night.jpg"
    if content_path.exists() and style_path.exists():
        sources = [str(content_path), str(style_path)]
    else:
        sources = [skimage.data.astronaut(), skimage.data.immunohistochemistry()]
    content, style = (resize_longest(as_batch(to_tensor(load_image(s).image)), size) for s in sources)
    return content, style


def style_grams(a_s, a_g) -> dict[str, torch.Tensor]:
    """The style image's Grams, rescaled to the generated image's H*W as :func:`transfer` does (same J)."""
    return {k: rescale_gram(gram_matrix(a_s[k]), a_s[k][0, 0].numel(), a_g[k][0, 0].numel()) for k in LAMBDA}


def taps(features, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
    """Run every module of ``features`` (as the reference does) and keep the named ReLU outputs."""
    wanted = {relu_index(layer): layer for layer in layers}
    out = {}
    for i, module in enumerate(features):
        x = module(x)
        if i in wanted:
            out[wanted[i]] = x.clone()  # the ReLUs are in place; keep a copy as the tutorial's losses do
    return out


def score(features, normalize, image, content, style) -> dict[str, float]:
    """The common judge: J of a final image, fp32, no autocast, the full network."""
    with torch.no_grad():
        layers = [*LAMBDA, DEFAULT_CONTENT_LAYER]
        a_g = taps(features, normalize(image.clamp(0, 1)), layers)
        a_c = taps(features, normalize(content), layers)
        a_s = taps(features, normalize(style), layers)
        jc = content_cost(a_c[DEFAULT_CONTENT_LAYER], a_g[DEFAULT_CONTENT_LAYER])
        js = style_cost(style_grams(a_s, a_g), a_g, LAMBDA, "gatys")
    return {"content": float(jc), "style": float(js), "total": float(ALPHA * jc + BETA * js)}


def reference(features, normalize, content, style, steps: int, seed: int) -> tuple[torch.Tensor, float, int]:
    """The tutorial's recipe; -> (image, seconds, function evaluations)."""
    layers = [*LAMBDA, DEFAULT_CONTENT_LAYER]
    net = features[: max(relu_index(layer) for layer in layers) + 1]  # the tutorial trims after the last loss
    image = initial_image(TransferConfig(seed=seed), content, style).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], max_iter=steps, tolerance_grad=0.0, tolerance_change=0.0)
    evaluations = [0]
    with torch.no_grad():
        target = taps(net, normalize(content), layers)[DEFAULT_CONTENT_LAYER]
        a_s = taps(net, normalize(style), layers)
        grams = None

    def closure():
        nonlocal grams
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        a_g = taps(net, normalize(image), layers)
        if grams is None:  # the style targets, once (their size rescaling needs G's layer sizes)
            grams = {k: g.detach() for k, g in style_grams(a_s, a_g).items()}
        j = ALPHA * content_cost(target, a_g[DEFAULT_CONTENT_LAYER]) + BETA * style_cost(grams, a_g, LAMBDA, "gatys")
        j.sum().backward()
        evaluations[0] += 1
        return j.sum()

    sync(content)
    start = time.perf_counter()
    optimizer.step(closure)
    sync(content)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        image.clamp_(0, 1)
    return image.detach(), seconds, evaluations[0]


def ours(features, normalize, content, style, steps: int, seed: int,
         compile_: bool, amp: bool) -> tuple[torch.Tensor, float, float]:
    """The project's transfer(); -> (image, seconds including setup, seconds of the steps)."""
    config = TransferConfig(alpha=ALPHA, beta=BETA, style_weights=dict(LAMBDA), steps=steps, seed=seed,
                            preview_every=0, compile=compile_, amp=amp)
    sync(content)
    start = time.perf_counter()
    last = None
    for last in transfer(features, normalize, content, [style], config):
        pass
    sync(content)
    return last.image, time.perf_counter() - start, last.seconds


def sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile our network (CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up steps per recipe (default 3 on CUDA, 0 on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)

    settings = runtime.use(runtime.Settings.from_env(device=args.device, weights_dir=args.weights_dir))
    device = runtime.pick_device(settings.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    features = weights.create("vgg19-caffe", device=device).eval()
    normalize = weights.get_record("vgg19-caffe").normalize
    content, style = (x.to(device) for x in images(args.size))
    warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 0)
    host = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({host}), "
          f"content {tuple(content.shape[-2:])}, {args.steps} steps, torch {torch.__version__}")

    results = {"device": str(device), "size": list(content.shape[-2:]), "steps": args.steps}
    if not args.skip_reference:
        if warmup:
            reference(features, normalize, content, style, warmup, args.seed)
        image, seconds, evals = reference(features, normalize, content, style, args.steps, args.seed)
        cost = score(features, normalize, image, content, style)
        results["reference"] = {"ms_per_step": 1000 * seconds / evals, "seconds": seconds, "evaluations": evals, **cost}
        print(f"reference  {1000 * seconds / evals:8.1f} ms/step  {seconds:7.2f} s  final J {cost['total']:.5g}")
    for label, amp in (("ours fp32", False), ("ours bf16", True)):
        if amp and not (device.type == "cuda" or engines.cpu_has_bf16()):
            print(f"{label}: skipped, this CPU has no bf16 hardware")
            continue
        if warmup:
            ours(features, normalize, content, style, warmup, args.seed, args.compile, amp)
        image, wall, step_seconds = ours(features, normalize, content, style, args.steps, args.seed, args.compile, amp)
        cost = score(features, normalize, image, content, style)
        results[label] = {"ms_per_step": 1000 * step_seconds / args.steps, "seconds": wall, **cost}
        print(f"{label:10} {1000 * step_seconds / args.steps:8.1f} ms/step  {wall:7.2f} s  final J {cost['total']:.5g}"
              "  (seconds include setup: Grams, content target)")
    base = results.get("reference") or results["ours fp32"]
    for label in ("ours fp32", "ours bf16"):
        if label in results and results[label] is not base:
            results[label]["speedup_per_step"] = base["ms_per_step"] / results[label]["ms_per_step"]
            results[label]["cost_ratio"] = results[label]["total"] / base["total"]
            print(f"{label}: {results[label]['speedup_per_step']:.2f}x per step vs "
                  f"{'the tutorial' if 'reference' in results else 'ours fp32'}; final J ratio "
                  f"{results[label]['cost_ratio']:.4f}")
    if "ours bf16" in results:
        bf16, fp32 = results["ours bf16"], results["ours fp32"]
        print(f"bf16 vs fp32: {fp32['ms_per_step'] / bf16['ms_per_step']:.2f}x per step; final J ratio "
              f"{bf16['total'] / fp32['total']:.4f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
