"""Face detection and 5-point landmarks with dlib (HOG detector + ``shape_predictor_5_face_landmarks``).

Both backends use this detector; they differ in how they cut and embed the faces.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import dlib
import numpy as np
from PIL import Image

#: Detection runs on a copy whose longest side is at most this: HOG time grows with the
#: pixel count (a 2000 px photo takes seconds) and faces that matter stay > 80 px.
DETECT_MAX_SIDE = 1280
#: At or below this longest side the detector also looks at 2x upsampled images (finds ~40 px faces).
UPSAMPLE_BELOW = 800


@dataclass
class DetectedFace:
    """One face: ``box`` (x0, y0, x1, y1) and ``landmarks`` (5 x 2, x/y) in pixels of the original image."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        return self.width * (self.box[3] - self.box[1])


class DlibFaceDetector:
    """``detect(rgb uint8 H x W x 3) -> list[DetectedFace]``, largest face first."""

    def __init__(self, predictor_path):
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path))
        # dlib objects are not documented as thread-safe; Gradio calls handlers from threads.
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = rgb if scale == 1.0 else np.asarray(
            Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
        upsample = 1 if max(small.shape[:2]) <= UPSAMPLE_BELOW else 0
        with self._lock:
            rects, scores, _ = self.detector.run(small, upsample, 0.0)
            faces = []
            for rect, score in zip(rects, scores):
                box = tuple(v / scale for v in (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1))
                full = dlib.rectangle(*(int(round(v)) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))
                shape = self.predictor(rgb, full)
                points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)
                faces.append(DetectedFace(box=box, landmarks=points, score=float(score)))
        faces.sort(key=lambda f: -f.area)
        return faces


def build_dlib_detector(weights_path) -> DlibFaceDetector:
    """Registry builder for ``face-dlib-landmarks5``."""
    return DlibFaceDetector(weights_path)
