"""One-shot recognition: enroll people from photos, then name every face of a query photo (or "not recognized")."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import UserError
from core.faces.gallery import GalleryStore, Match
from core.faces.pipeline import MIN_FACE_SIDE, FacePipeline, FaceSet, pick_face


@dataclass
class FaceAnswer:
    """One face of a query photo: its box (x0, y0, x1, y1) in pixels and the gallery's answer."""

    box: tuple[int, int, int, int]
    match: Match

    @property
    def label(self) -> str:
        if self.match.recognized:
            return f"{self.match.name} (d={self.match.distance:.2f})"
        return f"not recognized (nearest d={self.match.distance:.2f})" if self.match.nearest else "not recognized"

    def as_dict(self) -> dict:
        return {"box": list(self.box), "name": self.match.name, "nearest": self.match.nearest,
                "distance": self.match.distance, "recognized": self.match.recognized}


def enroll_images(pipeline: FacePipeline, store: GalleryStore, name: str, images, *, face: int = 0) -> int:
    """Enroll ``name`` from one or more RGB images (face ``face`` of each, 0 = largest), in one transaction.

    Returns the number of faces added (a face already stored for ``name`` is not added again). Every photo must
    show a usable face, else nothing is stored.
    """
    images = list(images)
    if not images:
        raise UserError("Please upload at least one photo of the person to enroll.")
    sets: list[FaceSet] = [pipeline.analyze(im) for im in images]
    picks = [pick_face(s, face, what=f"photo {k + 1}" if len(images) > 1 else "photo") for k, s in enumerate(sets)]
    embeddings = torch.stack([s.embeddings[i] for s, i in zip(sets, picks)])
    chips = [s.chips[i] for s, i in zip(sets, picks)]
    return store.enroll(name, embeddings, backend=pipeline.name, chips=chips)


def identify_image(pipeline: FacePipeline, store: GalleryStore, image, *, threshold: float | None = None,
                   min_face: int = MIN_FACE_SIDE) -> tuple[list[FaceAnswer], FaceSet]:
    """Every face (at least ``min_face`` pixels wide) of an RGB image -> its nearest enrolled person, or None.

    All faces are embedded in one call and searched with one matrix product.
    """
    face_set = pipeline.analyze(image, min_face=min_face)
    tau = pipeline.threshold if threshold is None else float(threshold)
    matches = store.identify(face_set.embeddings, backend=pipeline.name, threshold=tau) if len(face_set) else []
    return [FaceAnswer(box, m) for box, m in zip(face_set.boxes(), matches)], face_set
