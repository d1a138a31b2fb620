"""Where and how models run: device choice, dtype policy, a bounded model cache, OOM handling.

:class:`Settings` is built in one place, :meth:`Settings.from_env`, from an entry point's flags and the
``CVHUB_*`` environment (a flag wins over its variable); every entry point (the app and each CLI) adds the
same flags (:func:`add_arguments`) and installs its settings once (:func:`use`). Nothing here imports Gradio.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from core.engines import ENGINES, RUNTIMES
from core.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Settings:
    device: str = "auto"  # "auto", "cpu" or "cuda"
    weights_dir: Path | None = None  # the operator's weights folder, searched first
    max_batch_size: int = 8  # requests merged into one forward pass by batched handlers
    #: Upper bound on the parameters and buffers the model cache keeps in memory.
    cache_bytes: int = 3 * 1024**3
    concurrency: int = 2  # jobs of one event the app's queue runs at once
    gallery: Path | None = None  # one face gallery shared by every visitor (None: one per session)
    runtime: str = "auto"  # the engine models run on (core.engines): auto picks per model and host by measurement
    #: The engines auto may pick among (and a forced runtime must be one of): all by default; fewer make a start
    #: with an empty engine cache shorter (Inductor compiles for a minute or more per model).
    engines: tuple[str, ...] = ENGINES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags) -> Settings:
        """Flags (``device``, ``weights_dir``, ``max_batch_size``, ``concurrency``, ``gallery``, ``runtime``; None:
        not given) over ``CVHUB_DEVICE``, ``CVHUB_WEIGHTS_DIR``, ``CVHUB_MAX_BATCH_SIZE``, ``CVHUB_CONCURRENCY``,
        ``CVHUB_GALLERY``, ``CVHUB_RUNTIME`` over the defaults: the one place that reads them. ``CVHUB_ENGINES``
        (comma-separated, no flag) narrows the engines ``auto`` picks among."""
        env = os.environ if environ is None else environ

        def pick(field: str) -> str | None:
            given = flags.get(field)
            return given if given is not None else env.get(f"CVHUB_{field.upper()}") or None

        device = pick("device") or cls.device
        if device not in DEVICES:
            raise UserError(f"The device must be one of {', '.join(DEVICES)}, not {device!r}.")
        runtime = pick("runtime") or cls.runtime
        if runtime not in RUNTIMES:
            raise UserError(f"The runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}.")
        allowed = tuple(e.strip() for e in (pick("engines") or ",".join(ENGINES)).split(",") if e.strip())
        if unknown := [e for e in allowed if e not in ENGINES]:
            raise UserError(f"CVHUB_ENGINES may list {', '.join(ENGINES)}, not {', '.join(map(repr, unknown))}.")
        paths = {f: Path(pick(f)).expanduser() if pick(f) else None for f in ("weights_dir", "gallery")}
        return cls(device=device, runtime=runtime, engines=allowed,
                   max_batch_size=int(pick("max_batch_size") or cls.max_batch_size),
                   concurrency=int(pick("concurrency") or cls.concurrency), **paths)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of an entry point whose parser has :func:`add_arguments`' flags (and the app's)."""
        fields = ("device", "weights_dir", "max_batch_size", "concurrency", "gallery", "runtime")
        return cls.from_env(environ, **{k: getattr(args, k, None) for k in fields})


def add_arguments(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``--weights-dir`` (and ``--device``, ``--runtime``), the same on every entry point; unset, CVHUB_* decides."""
    parser.add_argument("--weights-dir", default=None,
                        help="folder searched first for weight files, e.g. ../shared/weights "
                             "(default: CVHUB_WEIGHTS_DIR)")
    if device:
        parser.add_argument("--device", choices=DEVICES, default=None,
                            help="auto takes CUDA when present (default: CVHUB_DEVICE, else auto)")
        parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                            help="engine the models run on: auto picks per model and host by measurement among "
                                 "those that keep its answers (default: CVHUB_RUNTIME, else auto)")


_settings: Settings | None = None


def use(new: Settings) -> Settings:
    """Install the process's settings: an entry point calls this once, with what its flags and environment say."""
    global _settings
    _settings = new
    return new


def settings() -> Settings:
    """The installed settings; before any entry point installed some, those of the environment alone."""
    return _settings if _settings is not None else Settings.from_env()


def pick_device(preference: str | None = None) -> torch.device:
    """``auto`` takes CUDA when present; asking for ``cuda`` on a CPU host is an error."""
    preference = preference or settings().device
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("This host has no CUDA GPU; start the app with --device cpu or --device auto.")
    return torch.device(preference)


def inference_dtype(device: torch.device) -> torch.dtype:
    """Half precision on GPUs (twice the throughput, accuracy kept), fp32 on CPUs (fp16 is slow there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def module_bytes(module: nn.Module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelCache:
    """Keeps loaded models, least recently used first out, under a byte budget.

    Loading is serialised per name so twenty users arriving at once load a model once.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._models: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, key: str, load: Callable[[], object]) -> object:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key][0]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key][0]
            model = load()
            size = module_bytes(model) if isinstance(model, nn.Module) else 0
            with self._lock:
                self._models[key] = (model, size)
                self._evict()
            return model

    def put(self, key: str, model: object) -> None:
        """Replace what ``key`` holds (a model now run by a faster engine)."""
        with self._lock:
            if key in self._models:
                self._models[key] = (model, self._models[key][1])

    def __contains__(self, key: str) -> bool:
        return key in self._models

    def _evict(self) -> None:
        # Never evict the newest model, even if it alone exceeds the budget.
        while len(self._models) > 1 and sum(s for _, s in self._models.values()) > self.max_bytes:
            self._models.popitem(last=False)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


@contextlib.contextmanager
def gpu_memory_guard() -> Iterator[None]:
    """Turn CUDA out-of-memory into one sentence and free the memory, so the app keeps serving."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise UserError(
            "The GPU ran out of memory for this request; please try a smaller image or fewer images at once."
        ) from exc


def release_memory() -> bool:
    """Give the heap memory that freed tensors and images leave behind back to the operating system.

    glibc keeps freed memory in its malloc arenas (one per thread that allocates, up to 8 per core) and
    seldom returns it by itself: after 50 users at once the app stayed about 1 GB above its warm size
    for good. ``malloc_trim(0)`` returns the free pages of every arena (about 0.1 s for a 2 GB heap,
    less when called often). Returns whether memory was returned; False where the C library is not glibc.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this interpreter already runs on
    except (OSError, AttributeError, TypeError):  # musl, macOS, Windows: nothing to do
        return False
    return bool(trim(0))
