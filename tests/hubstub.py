"""A stand-in Hugging Face Hub on 127.0.0.1, so tests exercise the real ``huggingface_hub`` download path.

It answers ``HEAD`` and ``GET`` on ``/{repo_id}/resolve/{revision}/{filename}`` with the
headers ``hf_hub_download`` reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``), and
404 for anything else. Usage::

    with serve_hub({("org/model", "model.safetensors"): data}) as (endpoint, revision):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
"""

from __future__ import annotations

import contextlib
import hashlib
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote

from tests.httpstub import serving

#: The one commit every served file belongs to (records pin it as their revision).
REVISION = "0123456789abcdef0123456789abcdef01234567"


@contextlib.contextmanager
def serve_hub(files: dict[tuple[str, str], bytes], revision: str = REVISION):
    class Handler(BaseHTTPRequestHandler):
        def _lookup(self):
            path = unquote(self.path.split("?", 1)[0]).lstrip("/")
            for (repo_id, filename), data in files.items():
                for rev in (revision, "main"):
                    if path == f"{repo_id}/resolve/{rev}/{filename}":
                        return data
            return None

        def _headers(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("X-Repo-Commit", revision)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()

        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            data = self._lookup()
            if data is None:
                self.send_error(404)
                return
            self._headers(data)

        def do_GET(self):  # noqa: N802
            data = self._lookup()
            if data is None:
                self.send_error(404)
                return
            self._headers(data)
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with serving(Handler) as endpoint:
        yield endpoint, revision
