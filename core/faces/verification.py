"""Verification ("is this the claimed person?"): d(x1, x2) = ||f(x1) - f(x2)||^2 <= tau -> "same".

Also the evaluation on labelled pairs (accuracy at a threshold, and the best threshold).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from core.faces.distances import cosine_distance, l2_distance, squared_l2
from core.faces.pipeline import FacePipeline, FaceSet, pick_face


@dataclass
class Verification:
    """The comparison of one face from each photo."""

    squared_l2: float
    l2: float
    cosine: float
    threshold: float
    same: bool
    faces_found: tuple[int, int]
    faces_used: tuple[int, int]  # 0-based, 0 = the largest face
    backend: str

    @property
    def verdict(self) -> str:
        return "same" if self.same else "different"

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def compare(e1: torch.Tensor, e2: torch.Tensor, threshold: float) -> dict:
    """Two embeddings ``D`` -> the three distances and the verdict (squared L2 <= threshold)."""
    d = float(squared_l2(e1, e2))
    return {"squared_l2": d, "l2": float(l2_distance(e1, e2)), "cosine": float(cosine_distance(e1, e2)),
            "same": d <= threshold}


def verify_faces(set1: FaceSet, set2: FaceSet, *, threshold: float, face1: int = 0, face2: int = 0,
                 backend: str = "") -> Verification:
    """Compare face ``face1`` of ``set1`` with face ``face2`` of ``set2`` (raises UserError for missing/tiny faces)."""
    i = pick_face(set1, face1, what="first photo")
    j = pick_face(set2, face2, what="second photo")
    result = compare(set1.embeddings[i], set2.embeddings[j], threshold)
    return Verification(threshold=threshold, faces_found=(len(set1), len(set2)), faces_used=(i, j),
                        backend=backend or set1.backend, **result)


def verify_images(pipeline: FacePipeline, image1, image2, *, threshold: float | None = None,
                  face1: int = 0, face2: int = 0) -> tuple[Verification, FaceSet, FaceSet]:
    """Two RGB images -> the verification and both photos' faces."""
    set1, set2 = pipeline.analyze(image1), pipeline.analyze(image2)
    tau = pipeline.threshold if threshold is None else float(threshold)
    return verify_faces(set1, set2, threshold=tau, face1=face1, face2=face2, backend=pipeline.name), set1, set2


def pair_accuracy(distances: torch.Tensor, same: torch.Tensor, threshold: float) -> float:
    """Fraction of pairs where ``(d <= threshold) == same``: ``N, N (bool) -> float``."""
    return ((distances <= threshold) == same.bool()).float().mean().item()


def best_threshold(distances: torch.Tensor, same: torch.Tensor) -> tuple[float, float]:
    """The threshold with the highest pair accuracy (midpoint between neighbouring distances) and that accuracy."""
    d, _ = torch.sort(distances.float())
    candidates = torch.cat([d[:1] - 1e-6, (d[1:] + d[:-1]) / 2, d[-1:] + 1e-6])
    accs = torch.stack([((distances <= t) == same.bool()).float().mean() for t in candidates])
    k = int(accs.argmax())
    return float(candidates[k]), float(accs[k])
