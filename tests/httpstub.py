"""A stand-in file server on 127.0.0.1 (torchvision's download site, a package index) that counts requests.

Usage::

    with serve_files({"/models/a-1234abcd.pth": data}) as (base_url, requests):
        ...  # GET base_url + "/models/a-1234abcd.pth"; ``requests`` lists the paths asked for
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@contextlib.contextmanager
def serve_files(files: dict[str, bytes], content_type: str = "application/octet-stream"):
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = unquote(self.path.split("?", 1)[0])
            requests.append(path)
            data = files.get(path)
            if data is None and not path.endswith("/"):
                data = files.get(path + "/")
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "text/html" if path.endswith("/") else content_type)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with serving(Handler) as base_url:
        yield base_url, requests


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]):
    """A threaded HTTP server with ``handler`` on a free port of 127.0.0.1, for the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
