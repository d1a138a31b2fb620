"""Model registry and weight resolver: ``weights.create(name)`` builds any model of the hub.

``weights.load(name)`` is the app's entry point: ``create`` on the configured device,
kept in a bounded cache so each model loads once per process.
"""

from __future__ import annotations

import logging
import threading

from core import engines
from core.runtime import ModelCache, pick_device, settings
from weights.engine_builds import build_in_child
from weights.registry import (
    ExternalFile,
    HubFile,
    ModelRecord,
    PackageFile,
    ProjectFile,
    RebuiltFile,
    UrlFile,
    create,
    get_record,
    list_models,
    register,
)
from weights.resolve import download_progress, is_available, is_obtainable, resolve, to_fetch

__all__ = [
    "ExternalFile", "HubFile", "ModelRecord", "PackageFile", "ProjectFile", "RebuiltFile", "UrlFile",
    "create", "download_progress", "get_record", "is_available", "is_obtainable", "list_models", "load", "is_loaded",
    "prepare_engines", "register", "resolve", "to_fetch",
]

_cache: ModelCache | None = None
_log = logging.getLogger(__name__)


def _model_cache() -> ModelCache:
    global _cache
    if _cache is None or _cache.max_bytes != settings().cache_bytes:
        _cache = ModelCache(settings().cache_bytes)
    return _cache


def load(name: str):
    """The model ``name`` on the configured device, created on first use and cached.

    A model with faster engines that no one has prepared yet (its files arrived after start-up, by a first
    use's download) gets them prepared as at start-up (:func:`prepare_engines`, in a background thread that waits
    for a child process): this request and those until it is done are served fp32.
    """
    device = pick_device()

    def build():
        model = engines.reinstall(name, create(name, device=device))
        if get_record(name).engines and settings().runtime != "eager" and not engines.is_known(name):
            engines.schedule([name])
            threading.Thread(target=prepare_engines, args=([name],), name=f"prepare-{name}", daemon=True).start()
        return model

    return _model_cache().get(f"{name}@{device}", build)


def prepare_engines(names) -> None:
    """Install on each model of ``names`` whose files are here the engine the settings' runtime picks: built,
    timed and chosen once per host in a child process (:mod:`weights.engine_builds`), then loaded here from the
    engine cache. A model whose engine fails to build keeps serving fp32: a faster path is never worth a broken
    one."""
    names = [n for n in names if is_available(get_record(n))]
    if settings().runtime == "eager":
        return
    engines.schedule(names)
    for name in names:
        try:
            fast = _prepared(name)
        except Exception:  # noqa: BLE001 (a converter's failure of any kind)
            _log.exception("%s: no faster engine, serving PyTorch fp32", name)
            engines.settle(name, "eager")
            continue
        _model_cache().put(f"{name}@{pick_device()}", fast)
        _log.info("%s: now served by %s", name, engines.described(name))


def _prepared(name: str):
    """``name``'s model with its engine, loaded from the engine cache, which a child fills first if need be."""
    try:
        return engines.load_prepared(name, load(name), settings().runtime, settings().engines)
    except engines.NotBuilt:
        build_in_child(name, settings())
    return engines.load_prepared(name, load(name), settings().runtime, settings().engines)


def is_loaded(name: str) -> bool:
    return f"{name}@{pick_device()}" in _model_cache()
