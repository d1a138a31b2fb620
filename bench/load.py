"""A whole class at once: N students call the app together; are all answered, how fast, and what memory it takes.

    python bench/load.py [--users 50] [--requests 3] [--weights-dir ../shared/weights]
    python bench/load.py --mixed [--users 50] [--requests 3]
    python bench/load.py --huge 4
    python bench/load.py --url http://127.0.0.1:7860/ [--pid PID]    # an app that is already running

Starts the real app (`app.py --device cpu`) on a free port, as a user would, unless --url is given.
Every user is its own `gradio_client.Client` (client timeout 120 s); after a warm-up request per endpoint
all of them start together and each sends --requests requests in a row, by default to /segment with
`enet-camvid` on the same synthetic street picture (so they all get the same result file, as a class
clicking the same example does). Every answer is checked: the output image downloads completely, opens
with PIL and has the picture's size. --mixed spreads the users over the panels (segment, instances,
lab_unpool, roi_pool_vs_align, activations, verify); --huge N sends N concurrent 12000x8000 uploads
(PNG and JPEG) to /segment, where a correct answer is a segmentation or a one-sentence refusal.

Prints the number of correct answers, p50/p95/max latency, throughput, and the resident memory of the
server process and its children (VmRSS from /proc): warm before the load, peak during it, and 30 s
after it ended. With --url the memory is read only when --pid names the server's process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLIENT_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(weights_dir: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "app.py", "--port", str(port), "--device", "cpu", "--weights-dir", weights_dir]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited during start-up; see {log_path}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise SystemExit("the app did not answer within 180 s")
            time.sleep(0.5)


# -- memory of the server ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def tree_rss_mb(pid: int) -> float:
    """VmRSS of the process and all its descendants, in MB."""
    total_kb, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total_kb += int(match.group(1)) if match else 0
        todo += _children(p)
    return total_kb / 1024


class RssSampler:
    """Samples the server's memory every 0.25 s in a thread; ``peak`` is the largest value seen."""

    def __init__(self, pid: int | None):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float | None:
        return tree_rss_mb(self.pid) if self.pid else None

    def _run(self):
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, self.now())

    def __enter__(self):
        if self.pid:
            self.peak = self.now()
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.pid:
            self._thread.join()
            self.peak = max(self.peak, self.now())


# -- inputs --------------------------------------------------------------------------------------------


def street_picture(path: Path, size=(960, 720)) -> Path:
    """A synthetic road scene (sky, buildings, road with lane marks, a car, a pole), with sensor noise."""
    w, h = size
    rng = np.random.default_rng(0)
    y = np.arange(h)[:, None, None]
    image = np.zeros((h, w, 3), np.float32)
    image[:] = np.where(y < h * 0.45, [135, 170, 215], [90, 90, 95])  # sky above, road below
    for x0 in range(0, w, w // 8):  # buildings along the horizon
        top = int(h * rng.uniform(0.12, 0.35))
        image[top : int(h * 0.5), x0 : x0 + w // 9] = rng.uniform(70, 170, 3)
    image[int(h * 0.72) : int(h * 0.74), :: 60] = 230  # lane marks
    image[int(h * 0.55) : int(h * 0.7), int(w * 0.55) : int(w * 0.75)] = [150, 20, 25]  # a car
    image[int(h * 0.2) : int(h * 0.7), int(w * 0.2) : int(w * 0.21)] = 60  # a pole
    image += rng.normal(0, 6, image.shape)
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)
    return path


def huge_pictures(folder: Path) -> list[Path]:
    """A 12000x8000 PNG and JPEG (96 Mpixel: 288 MB as RGB once decoded)."""
    w, h = 12000, 8000
    gradient = np.add.outer(np.arange(h) // 40, np.arange(w) // 60).astype(np.uint8)
    image = Image.fromarray(np.stack([gradient, gradient[::-1], 255 - gradient], axis=-1))
    png, jpeg = folder / "huge.png", folder / "huge.jpg"
    image.save(png, compress_level=1)
    image.save(jpeg, quality=90)
    return [png, jpeg]


def face_photos() -> list[Path]:
    faces = REPO.parent / "shared" / "data" / "faces" / "gallery_and_queries" / "train" / "obama"
    return sorted(faces.glob("*.jpg"))[:2]


# -- what users send, and what a correct answer is ----------------------------------------------------


def _opens(path, size=None) -> None:
    if path is None:
        raise AssertionError("the answer has no image")
    with Image.open(path) as image:
        image.load()  # a truncated file fails here
        if size is not None and image.size != tuple(size):
            raise AssertionError(f"output is {image.size[0]}x{image.size[1]}, expected {size[0]}x{size[1]}")


def segment_call(picture: Path, size):
    def call(client, handle_file):
        overlay, legend, info = client.submit(handle_file(str(picture)), "enet-camvid", 0.6,
                                              api_name="/segment").result(timeout=CLIENT_TIMEOUT_S)
        _opens(overlay, size)
        assert "road" in legend.lower() and "enet-camvid" in info, "legend or info is missing"
        batch = re.search(r"batch of (\d+)", info)
        return f"segment: forward pass on a batch of {batch.group(1) if batch else 1}"
    return "segment", call


def mixed_calls(picture: Path, size) -> list:
    grid = {"headers": ["1", "2", "3", "4"], "data": [[1, 3, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]}
    values = {"headers": ["1", "2"], "data": [[1, 2], [3, 4]]}
    faces = face_photos()

    def instances(client, handle_file):
        shown, table, info = client.submit(handle_file(str(picture)), "maskrcnn-vgg19-camvid", 0.5, True, True, True,
                                           api_name="/instances").result(timeout=CLIENT_TIMEOUT_S)
        _opens(shown, size)

    def lab_unpool(client, handle_file):
        _, pooled, *_ = client.submit(grid, values, api_name="/lab_unpool").result(timeout=CLIENT_TIMEOUT_S)
        assert re.findall(r"<td[^>]*>([^<]*)</td>", pooled) == ["5", "6", "7", "8"], "wrong pooled grid"

    def roi(client, handle_file):
        *images, text = client.submit(handle_file(str(picture)), 100, 80, 500, 400,
                                      "VGG-19 relu5_1 (stride 16, 512 channels)", 7, 2,
                                      api_name="/roi_pool_vs_align").result(timeout=CLIENT_TIMEOUT_S)
        for path in images:
            _opens(path)
        assert "RoI Align" in text

    def activations(client, handle_file):
        gallery, unit = client.submit(handle_file(str(picture)), "vgg19-caffe", "relu3_1", 0,
                                      api_name="/activations").result(timeout=CLIENT_TIMEOUT_S)
        assert gallery, "no activation maps"
        for item in gallery:
            _opens(item["image"])
        _opens(unit)

    def verify(client, handle_file):
        *_, text = client.submit(handle_file(str(faces[0])), handle_file(str(faces[-1])), 1, 1, 0.36, "dlib",
                                 api_name="/verify").result(timeout=CLIENT_TIMEOUT_S)
        assert "same person" in text.lower() or "distance" in text.lower(), text[:80]

    calls = [segment_call(picture, size), ("instances", instances), ("lab_unpool", lab_unpool),
             ("roi_pool_vs_align", roi), ("activations", activations)]
    return calls + ([("verify", verify)] if len(faces) == 2 else [])


def huge_call(picture: Path):
    def call(client, handle_file):
        try:
            overlay, _, info = client.submit(handle_file(str(picture)), "enet-camvid", 0.6,
                                             api_name="/segment").result(timeout=CLIENT_TIMEOUT_S)
        except AppError as exc:  # a one-sentence refusal is a correct answer to a huge upload
            if "Something went wrong on our side" in str(exc):
                raise
            return f"refused: {str(exc)[:100]}"
        if overlay is None and info.startswith("⚠"):  # refused inside a batch: the sentence is in the info
            return f"refused in a batch: {info[2:100]}"
        _opens(overlay)
        return f"segmented at {Image.open(overlay).size}"
    return f"huge {picture.suffix[1:]}", call


# -- the crowd ----------------------------------------------------------------------------------------


def run_crowd(url: str, users: int, requests: int, calls_for_user, download_dir: Path) -> list[dict]:
    """Each user: its own Client; all start together; each sends ``requests`` calls in a row."""
    ready = threading.Barrier(users)
    results: list[dict] = []
    lock = threading.Lock()

    def user(k: int):
        client = None
        try:
            client = Client(url, verbose=False, httpx_kwargs={"timeout": CLIENT_TIMEOUT_S},
                            download_files=str(download_dir / f"user{k}"))
        finally:
            ready.wait()  # everyone starts at once, even a user whose Client failed to connect
        if client is None:
            return
        for r in range(requests):
            name, call = calls_for_user(k, r)
            t0 = time.perf_counter()
            try:
                note = call(client, handle_file)
                row = dict(user=k, name=name, ok=True, s=time.perf_counter() - t0, note=note)
            except Exception as exc:  # every failure is counted and shown, not raised
                message = re.sub(r"'/[^']*'", "<a file>", str(exc))  # so equal failures count as one kind
                row = dict(user=k, name=name, ok=False, s=time.perf_counter() - t0,
                           error=f"{type(exc).__name__}: {message[:160]}")
            with lock:
                results.append(row)
        client.close()

    with ThreadPoolExecutor(users) as pool:
        for future in [pool.submit(user, k) for k in range(users)]:
            try:
                future.result()
            except Exception:
                traceback.print_exc()
                results.append(dict(user=-1, name="connect", ok=False, s=0.0, error="Client() failed"))
    return results


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(results: list[dict], wall_s: float) -> None:
    ok = [r for r in results if r["ok"]]
    print(f"answers: {len(ok)} of {len(results)} correct in {wall_s:.1f} s "
          f"({len(ok) / wall_s:.2f} correct answers/s)")
    for name in sorted({r["name"] for r in results}):
        s = [r["s"] for r in ok if r["name"] == name]
        n = sum(r["name"] == name for r in results)
        if s:
            print(f"  {name:>18}: {len(s)}/{n} ok, latency p50 {percentile(s, 50):.1f} s  "
                  f"p95 {percentile(s, 95):.1f} s  max {max(s):.1f} s")
        else:
            print(f"  {name:>18}: 0/{n} ok")
    notes: dict[str, int] = {}
    for r in ok:
        if r.get("note"):
            notes[r["note"]] = notes.get(r["note"], 0) + 1
    for note, n in sorted(notes.items()):
        print(f"  answer x{n}: {note}")
    errors: dict[str, int] = {}
    for r in results:
        if not r["ok"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    for error, n in sorted(errors.items(), key=lambda e: -e[1]):
        print(f"  FAILED x{n}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3, help="requests per user, one after the other")
    parser.add_argument("--mixed", action="store_true", help="spread the users over the panels")
    parser.add_argument("--huge", type=int, default=0, metavar="N", help="N concurrent 12000x8000 uploads")
    parser.add_argument("--picture", help="picture to send (default: a synthetic 960x720 street scene)")
    parser.add_argument("--url", help="an app that is already running (default: start one)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    parser.add_argument("--weights-dir", default=str(REPO.parent / "shared" / "weights"))
    parser.add_argument("--after-s", type=float, default=30.0, help="wait this long after the load for memory")
    parser.add_argument("--log", default=None, help="server log file (default: a temp file, path printed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cvhub-load-"))
    picture = Path(args.picture) if args.picture else street_picture(work / "street.png")
    size = Image.open(picture).size
    log_path = Path(args.log) if args.log else work / "server.log"
    proc = None
    if args.url:
        url, pid = args.url, args.pid
    else:
        t0 = time.perf_counter()
        proc, url = start_app(args.weights_dir, log_path)
        pid = proc.pid
        print(f"app started in {time.perf_counter() - t0:.1f} s at {url} (pid {pid}, log {log_path})")
    try:
        if args.huge:
            pictures = huge_pictures(work)
            users, requests = args.huge, 1
            plan = [huge_call(p) for p in pictures]
            what = f"{users} concurrent 12000x8000 uploads (PNG and JPEG) to /segment"
        elif args.mixed:
            users, requests = args.users, args.requests
            plan = mixed_calls(picture, size)
            what = f"{users} users x {requests} requests across {', '.join(n for n, _ in plan)}"
        else:
            users, requests = args.users, args.requests
            plan = [segment_call(picture, size)]
            what = f"{users} users x {requests} requests to /segment (enet-camvid, {size[0]}x{size[1]} picture)"

        def calls_for_user(k: int, r: int):
            return plan[(k + r) % len(plan)]

        # Warm-up: one request per endpoint (an ordinary picture for --huge), so the models are loaded
        # before memory is called "warm".
        warm_plan = [segment_call(picture, size)] if args.huge else plan
        warm = run_crowd(url, 1, len(warm_plan), lambda k, r: warm_plan[r], work / "warm")
        for row in warm:
            if not row["ok"]:
                print(f"warm-up {row['name']} failed: {row['error']}")
        sampler = RssSampler(pid)
        rss_warm = sampler.now()
        print(f"load: {what}, client timeout {CLIENT_TIMEOUT_S} s, {os.cpu_count()} CPUs")
        t0 = time.perf_counter()
        with sampler:
            results = run_crowd(url, users, requests, calls_for_user, work / "answers")
        wall = time.perf_counter() - t0
        report(results, wall)
        if pid:
            after = []
            end = time.monotonic() + args.after_s
            while time.monotonic() < end:
                time.sleep(1)
                after.append(sampler.now())
            print(f"server RSS: warm {rss_warm:.0f} MB, peak during load {sampler.peak:.0f} MB, "
                  f"{args.after_s:.0f} s after {after[-1]:.0f} MB (lowest in that window {min(after):.0f} MB)")
        if log_path.exists():
            text = log_path.read_text(errors="replace")
            # a cached result rewritten while it downloads: "Too little (or much) data for declared Content-Length"
            torn = len(re.findall(r"LocalProtocolError: Too (?:little|much) data for declared Content-Length", text))
            print(f"server log: {torn} x 'Too little/much data for declared Content-Length', "
                  f"{text.count('Traceback')} tracebacks ({log_path})")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        for path in work.iterdir():  # keep only the server's log
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path != log_path:
                path.unlink()


if __name__ == "__main__":
    main()
