"""How long `python app.py` takes until its page answers (the issue's bound: 15 s on a 2-core CPU).

    python bench/startup.py [--runs 5] [--weights-dir ../shared/weights]

Starts the real app on a free port as a user would, times first HTTP 200 of the page and the first
answer of the API (the lab's max unpooling, no model involved), stops it, and prints min/median/max.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(weights_dir: str | None) -> tuple[float, float]:
    port = free_port()
    cmd = [sys.executable, "app.py", "--port", str(port), "--device", "cpu"]
    if weights_dir:
        cmd += ["--weights-dir", weights_dir]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        while True:
            if proc.poll() is not None:
                raise SystemExit("the app exited during start-up")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.05)
        page = time.perf_counter() - t0
        grid = {"headers": ["1", "2"], "data": [[1, 2], [3, 4]]}
        Client(url, verbose=False).predict(grid, {"headers": ["1"], "data": [[9]]}, api_name="/lab_unpool")
        return page, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--weights-dir", default=None)
    args = parser.parse_args()
    runs = [one_start(args.weights_dir) for _ in range(args.runs)]
    print(f"{os.cpu_count()} CPUs, {args.runs} starts of `python app.py`")
    for label, values in (("page answers", [r[0] for r in runs]), ("first API answer", [r[1] for r in runs])):
        print(f"{label:>17}: min {min(values):.2f} s  median {statistics.median(values):.2f} s  "
              f"max {max(values):.2f} s")


if __name__ == "__main__":
    main()
