"""Face speed: gallery search, pipeline overhead over dlib's own calls, torch backend throughput.

    python bench/faces.py [--people 100000] [--runs 20] [--device auto|cpu|cuda] [--threads N]
                          [--skip-dlib] [--skip-torch] [--sqlite] [--json]

1. Search: one query (and a photo's 5 faces) against a gallery of ``--people`` 128-D embeddings,
   one matrix product (``EmbeddingIndex.search``); target < 50 ms for 100,000 people on CPU.
   ``--sqlite`` also times filling an SQLite gallery of that size and loading its search matrix.
2. Pipeline overhead (needs ../shared/data/faces): our ``analyze`` (detect, landmarks, align, embed)
   against the same dlib calls made directly, per face; target: at most 20 % more.
3. Torch backend: a full-size InceptionResnetV1 (random weights, the speed does not depend on
   them) embedding batches of 160 x 160 chips; target >= 1,000 faces/s on the GPU host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dlib
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.faces.detection import DETECT_MAX_SIDE, UPSAMPLE_BELOW  # noqa: E402
from core.faces.gallery import EmbeddingIndex, GalleryStore  # noqa: E402
from core.faces.inception_resnet import TorchFaceEmbedder, inception_resnet_v1  # noqa: E402
from core.faces.pipeline import load_pipeline  # noqa: E402
from core.images import load_image  # noqa: E402
from core.runtime import pick_device  # noqa: E402

FACES = REPO.parent / "shared" / "data" / "faces"


def timed(fn, runs: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ms(values) -> dict:
    return {"median_ms": round(1000 * statistics.median(values), 3), "min_ms": round(1000 * min(values), 3)}


def bench_search(people: int, runs: int, sqlite: bool) -> dict:
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(people, 128), dim=1)
    index = EmbeddingIndex(embeddings, np.arange(people), {i: f"person {i}" for i in range(people)})
    one = embeddings[1234:1235] + 0.01 * torch.randn(1, 128)
    five = embeddings[:5] + 0.01 * torch.randn(5, 128)
    assert index.search(one, 0.36)[0].name == "person 1234"
    out = {"people": people, "threads": torch.get_num_threads(),
           "search_1_query": ms(timed(lambda: index.search(one, 0.36), runs)),
           "search_5_queries": ms(timed(lambda: index.search(five, 0.36), runs))}
    if sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            store = GalleryStore(Path(tmp) / "g.db")
            t0 = time.perf_counter()
            chunk = 10_000
            for start in range(0, people, chunk):  # one transaction per 10,000 people (each a person row)
                with store._write() as con:
                    con.executemany("INSERT INTO people(id, name, created) VALUES (?, ?, 0)",
                                    [(i + 1, f"person {i}") for i in range(start, min(people, start + chunk))])
                    con.executemany(
                        "INSERT INTO faces(person_id, backend, dim, embedding, created) VALUES (?, 'bench', 128, ?, 0)",
                        [(i + 1, embeddings[i].numpy().astype("<f4").tobytes())
                         for i in range(start, min(people, start + chunk))])
            out["sqlite_fill_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            store.index("bench")
            out["sqlite_load_index_s"] = round(time.perf_counter() - t0, 3)
            out["sqlite_identify_1_query"] = ms(timed(lambda: store.identify(one, backend="bench", threshold=0.36),
                                                      runs))
    return out


def bench_pipeline(runs: int) -> dict:
    """Per face: dlib's own calls on the same (resized) image vs our pipeline's analyze."""
    photos = sorted((FACES / "gallery_and_queries" / "train").glob("*/*"))[:6]
    if not photos:
        return {"skipped": f"no photos under {FACES}"}
    images = [np.asarray(load_image(p).image) for p in photos]
    pipeline = load_pipeline("dlib")
    detector, predictor = pipeline.detector.detector, pipeline.detector.predictor
    model = pipeline.embedder.model

    def raw(rgb):  # what a user of dlib would write: detect, 5 landmarks, descriptor (chip cut inside dlib)
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = rgb if scale == 1.0 else np.asarray(
            Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
        rects, _, _ = detector.run(small, 1 if max(small.shape[:2]) <= UPSAMPLE_BELOW else 0, 0.0)
        out = []
        for r in rects:
            full = dlib.rectangle(*(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom())))
            out.append(np.array(model.compute_face_descriptor(rgb, predictor(rgb, full))))
        return out

    faces = sum(len(raw(im)) for im in images)
    raw_t = timed(lambda: [raw(im) for im in images], runs)
    ours_t = timed(lambda: [pipeline.analyze(im) for im in images], runs)
    # The embedding step alone: descriptor of pre-cut chips, dlib directly vs our embed (tensor in, tensor out).
    chips = torch.cat([pipeline.analyze(im).chips for im in images])
    arrays = [np.ascontiguousarray(c) for c in chips.permute(0, 2, 3, 1).numpy()]
    raw_embed = timed(lambda: model.compute_face_descriptor(arrays), runs)
    ours_embed = timed(lambda: pipeline.embed_chips(chips), runs)
    per_face = lambda t: statistics.median(t) / faces  # noqa: E731
    return {"photos": len(images), "faces": faces,
            "dlib_direct_ms_per_face": round(1000 * per_face(raw_t), 1),
            "pipeline_ms_per_face": round(1000 * per_face(ours_t), 1),
            "pipeline_over_dlib": round(statistics.median(ours_t) / statistics.median(raw_t), 3),
            "dlib_embed_faces_per_s": round(faces / statistics.median(raw_embed), 1),
            "embed_over_dlib": round(statistics.median(ours_embed) / statistics.median(raw_embed), 3)}


def bench_torch(device: str, runs: int, batch: int) -> dict:
    dev = pick_device(device)
    model = inception_resnet_v1().eval().to(dev)
    embedder = TorchFaceEmbedder(model, lambda x: (x - 0.5) / (128 / 255), batch_size=batch)
    chips = torch.randint(0, 256, (batch, 3, 160, 160), dtype=torch.uint8)

    def run():
        embedder.embed(chips)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t = timed(run, runs)
    return {"device": str(dev), "batch": batch, "faces_per_s": round(batch / statistics.median(t), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=None, help="torch batch (default 256 on GPU, 16 on CPU)")
    parser.add_argument("--skip-dlib", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (on a busy shared CPU, 1 thread is often faster)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"search": bench_search(args.people, args.runs, args.sqlite)}
    if not args.skip_dlib:
        report["pipeline"] = bench_pipeline(max(2, args.runs // 5))
    if not args.skip_torch:
        gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        report["torch"] = bench_torch(args.device, max(2, args.runs // 5), args.batch or (256 if gpu else 16))
    if args.json:
        print(json.dumps(report, indent=1))
        return
    s = report["search"]
    print(f"search over {s['people']:,} people ({s['threads']} threads): 1 query {s['search_1_query']['median_ms']} ms "
          f"(median), 5 queries {s['search_5_queries']['median_ms']} ms  [target < 50 ms]")
    if "sqlite_fill_s" in s:
        print(f"  SQLite: fill {s['sqlite_fill_s']} s, load search matrix {s['sqlite_load_index_s']} s, "
              f"identify {s['sqlite_identify_1_query']['median_ms']} ms")
    if "pipeline" in report:
        p = report["pipeline"]
        if "skipped" in p:
            print("pipeline:", p["skipped"])
        else:
            print(f"pipeline: {p['pipeline_ms_per_face']} ms/face "
                  f"vs dlib direct {p['dlib_direct_ms_per_face']} ms/face "
                  f"-> x{p['pipeline_over_dlib']} [target <= x1.20]; embed step x{p['embed_over_dlib']}, "
                  f"dlib embeds {p['dlib_embed_faces_per_s']} faces/s")
    if "torch" in report:
        t = report["torch"]
        print(f"torch InceptionResnetV1 on {t['device']}: {t['faces_per_s']} faces/s (batch {t['batch']}) "
              "[target >= 1,000 on the GPU host]")


if __name__ == "__main__":
    main()
