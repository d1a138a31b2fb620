"""Command line for the face pipeline (also used by tests and benchmarks).

    python -m core.faces verify IMG1 IMG2 [--json] [--backend dlib|facenet] [--threshold T]
    python -m core.faces verify-pairs PAIRS.csv --root DIR [--json]
    python -m core.faces enroll --gallery DB NAME IMG...
    python -m core.faces identify --gallery DB IMG [--json]
    python -m core.faces people --gallery DB

PAIRS.csv has columns ``file_x,file_y`` and optionally a label: ``same`` (1/0) or ``Decision`` (Yes/No).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

from core.errors import UserError
from core.faces.gallery import GalleryStore
from core.faces.pipeline import load_pipeline
from core.faces.recognition import enroll_images, identify_image
from core.faces.verification import compare, pair_accuracy, pick_face, verify_images
from core.images import load_image


def _pipeline(args):
    return load_pipeline(args.backend)


def _image(path, what="photo"):
    return load_image(path, what=f"{what} ({path})").image


def _label(row: dict) -> int | None:
    if row.get("same", "") not in ("", None):
        return int(float(row["same"]))
    if row.get("Decision", "") not in ("", None):
        return 1 if row["Decision"].strip().lower() in ("yes", "y", "1", "true", "same") else 0
    return None


def cmd_verify(args) -> dict:
    result, set1, set2 = verify_images(_pipeline(args), _image(args.image1, "first photo"),
                                       _image(args.image2, "second photo"), threshold=args.threshold,
                                       face1=args.face1, face2=args.face2)
    out = result.as_dict()
    out["boxes"] = [set1.boxes(), set2.boxes()]
    return out


def cmd_verify_pairs(args) -> dict:
    pipeline = _pipeline(args)
    tau = pipeline.threshold if args.threshold is None else args.threshold
    root = Path(args.root) if args.root else Path(args.pairs).parent
    cache = {}

    def embedding(name):
        if name not in cache:
            face_set = pipeline.analyze(_image(root / name))
            cache[name] = face_set.embeddings[pick_face(face_set, 0, what=f"photo {name}")]
        return cache[name]

    pairs, distances, labels = [], [], []
    with open(args.pairs, newline="") as f:
        for row in csv.DictReader(f):
            entry = {"file_x": row["file_x"], "file_y": row["file_y"]}
            try:
                entry.update(compare(embedding(row["file_x"]), embedding(row["file_y"]), tau))
                entry["verdict"] = "same" if entry["same"] else "different"
                label = _label(row)
                if label is not None:
                    entry["label"] = label
                    distances.append(entry["squared_l2"])
                    labels.append(label)
            except UserError as exc:
                entry["error"] = str(exc)
            pairs.append(entry)
    out = {"backend": pipeline.name, "threshold": tau, "pairs": pairs}
    if labels:
        out["accuracy"] = pair_accuracy(torch.tensor(distances), torch.tensor(labels, dtype=torch.bool), tau)
        out["labelled_pairs"] = len(labels)
    return out


def cmd_enroll(args) -> dict:
    store = GalleryStore(args.gallery)
    added = enroll_images(_pipeline(args), store, args.name, [_image(p) for p in args.images])
    return {"name": args.name, "faces_added": added, "people": len(store.people())}


def cmd_identify(args) -> dict:
    pipeline = _pipeline(args)
    answers, face_set = identify_image(pipeline, GalleryStore(args.gallery), _image(args.image),
                                       threshold=args.threshold)
    return {"backend": pipeline.name, "threshold": pipeline.threshold if args.threshold is None else args.threshold,
            "faces": [a.as_dict() for a in answers], "notes": face_set.notes}


def cmd_people(args) -> dict:
    return {"people": [{"name": p.name, "faces": p.faces} for p in GalleryStore(args.gallery).people()]}


def _print_text(out: dict) -> None:
    if "verdict" in out:
        print(f"{out['verdict']}: d = {out['squared_l2']:.4f} (tau = {out['threshold']:.4f}), "
              f"faces found {out['faces_found'][0]} and {out['faces_found'][1]}")
    elif "pairs" in out:
        for p in out["pairs"]:
            print(p["file_x"], p["file_y"], p.get("error") or f"{p['squared_l2']:.4f} {p['verdict']}")
        if "accuracy" in out:
            print(f"accuracy {out['accuracy']:.4f} on {out['labelled_pairs']} labelled pairs "
                  f"at tau = {out['threshold']}")
    elif "faces" in out and isinstance(out["faces"], list):
        for f in out["faces"]:
            print(f["box"], f["name"] or "not recognized", f"{f['distance']:.4f}")
    else:
        print(json.dumps(out))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.faces", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, **kw):
        p = sub.add_parser(name, **kw)
        p.add_argument("--backend", default="dlib", choices=("dlib", "facenet"))
        p.add_argument("--threshold", type=float, default=None, help="tau on the squared L2 distance")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
        return p

    p = add("verify", cmd_verify)
    p.add_argument("image1")
    p.add_argument("image2")
    p.add_argument("--face1", type=int, default=0, help="face number in the first photo (0 = largest)")
    p.add_argument("--face2", type=int, default=0)
    p = add("verify-pairs", cmd_verify_pairs)
    p.add_argument("pairs")
    p.add_argument("--root", default=None, help="folder the CSV's file names are relative to")
    p = add("enroll", cmd_enroll)
    p.add_argument("--gallery", required=True)
    p.add_argument("name")
    p.add_argument("images", nargs="+")
    p = add("identify", cmd_identify)
    p.add_argument("--gallery", required=True)
    p.add_argument("image")
    p = add("people", cmd_people)
    p.add_argument("--gallery", required=True)

    args = parser.parse_args(argv)
    try:
        out = args.func(args)
    except UserError as exc:
        print(json.dumps({"error": str(exc)}) if args.json else f"error: {exc}",
              file=sys.stdout if args.json else sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        _print_text(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
