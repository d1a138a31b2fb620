"""Model registry and weight resolver: ``weights.create(name)`` builds any model of the hub.

``weights.load(name)`` is the app's entry point: ``create`` on the configured device,
kept in a bounded cache so each model loads once per process.
"""

from __future__ import annotations

from core.runtime import ModelCache, pick_device, settings
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
    "register", "resolve", "to_fetch",
]

_cache: ModelCache | None = None


def _model_cache() -> ModelCache:
    global _cache
    if _cache is None or _cache.max_bytes != settings().cache_bytes:
        _cache = ModelCache(settings().cache_bytes)
    return _cache


def load(name: str):
    """The model ``name`` on the configured device, created on first use and cached."""
    device = pick_device()
    return _model_cache().get(f"{name}@{device}", lambda: create(name, device=device))


def is_loaded(name: str) -> bool:
    return f"{name}@{pick_device()}" in _model_cache()
