"""dlib's face-recognition ResNet (128-D, 99.38% on LFW) as an embedder: ``align`` + ``embed``."""

from __future__ import annotations

import threading

import dlib
import numpy as np
import torch

from core.faces.detection import DetectedFace


class DlibResnetEmbedder:
    """Chips 150 x 150 cut by dlib itself (its model was trained on exactly these), 128-D embeddings."""

    name = "dlib"
    chip_size = 150
    padding = 0.25
    embedding_dim = 128

    def __init__(self, model_path):
        self.model = dlib.face_recognition_model_v1(str(model_path))
        self._lock = threading.Lock()

    def align(self, rgb: np.ndarray, faces: list[DetectedFace]) -> torch.Tensor:
        """``H x W x 3`` uint8 + N faces -> ``N x 3 x 150 x 150`` uint8 chips."""
        if not faces:
            return torch.zeros((0, 3, self.chip_size, self.chip_size), dtype=torch.uint8)
        shapes = dlib.full_object_detections()
        for face in faces:
            x0, y0, x1, y1 = face.box
            rect = dlib.rectangle(*(int(round(v)) for v in (x0, y0, x1 - 1, y1 - 1)))
            points = dlib.points()
            for x, y in face.landmarks:
                points.append(dlib.point(int(round(x)), int(round(y))))
            shapes.append(dlib.full_object_detection(rect, points))
        chips = dlib.get_face_chips(rgb, shapes, size=self.chip_size, padding=self.padding)
        return torch.from_numpy(np.stack([np.asarray(c) for c in chips])).permute(0, 3, 1, 2).contiguous()

    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        """``N x 3 x 150 x 150`` uint8 chips -> ``N x 128`` float32, all N in one call to dlib."""
        if chips.shape[0] == 0:
            return torch.zeros((0, self.embedding_dim))
        arrays = [np.ascontiguousarray(c) for c in chips.permute(0, 2, 3, 1).numpy()]
        with self._lock:
            vectors = self.model.compute_face_descriptor(arrays)
        return torch.tensor(np.array(vectors), dtype=torch.float32)


def build_dlib_resnet(weights_path) -> DlibResnetEmbedder:
    """Registry builder for ``face-dlib-resnet``."""
    return DlibResnetEmbedder(weights_path)
