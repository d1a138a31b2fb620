"""Face detection and 5-point landmarks with dlib (HOG detector + ``shape_predictor_5_face_landmarks``).

Both backends use this detector; they differ in how they cut and embed the faces.

dlib's HOG detector slides an 80 x 80 window over an image pyramid, so it sees faces from about 80 pixels
wide up; smaller ones it finds only on a 2x upsampled copy, which costs about four times as much. A group
photo shrunk to :data:`DETECT_MAX_SIDE` has faces near that limit, so one pass misses the back rows (a
9-person selfie gave 4 boxes). The upsampled pass therefore runs when it pays (:func:`hog_passes`): on a
small photo, when the first pass found nothing, or when the smallest face it found is close to the limit,
which says that slightly smaller faces may sit just below it. A portrait's one large face costs one pass.
``python bench/faces.py --recall`` measures what each choice finds on the shared group photos.

dlib's CNN detector (``mmod_human_face_detector.dat``, in the same PyPI package) was measured too: on a shared
2-core CPU it took 6 to 17 s per photo at 1x (50 to 80 s upsampled) against 0.1 to 1 s here, and at 1x it
missed the small faces as well (2 of 13 in the bench's mosaic): too slow for a free CPU Space.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import dlib
import numpy as np
from PIL import Image

#: Detection runs on a copy whose longest side is at most this: HOG time grows with the
#: pixel count (a 2000 px photo takes seconds).
DETECT_MAX_SIDE = 1280
#: At or below this longest side the detector looks at the 2x upsampled image at once (finds ~40 px faces).
UPSAMPLE_BELOW = 800
#: After a first pass without upsampling, a smallest face narrower than this (pixels of the detection copy)
#: calls for the upsampled pass: HOG's smallest boxes are ~73 px, so this is about 1.5 times its limit.
SMALL_FACE = 120


@dataclass
class DetectedFace:
    """One face: ``box`` (x0, y0, x1, y1) and ``landmarks`` (5 x 2, x/y) in pixels of the original image.

    ``box`` is where the detector put it and may reach past the image's edge for a face cut by the frame;
    :meth:`inside` is the part within the image (what is drawn)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        return self.width * (self.box[3] - self.box[1])

    def inside(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The box in whole pixels, clamped to an image of ``size`` (width, height): 0 <= x <= width - 1."""
        w, h = size
        x0, y0, x1, y1 = (int(round(v)) for v in self.box)
        return max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)


@dataclass
class Detection:
    """What one photo's detection did: the faces (largest first) and how they were found."""

    faces: list[DetectedFace]
    side: int  # longest side of the copy the detector saw
    upsampled: bool
    why_upsampled: str  # "" when it was not
    seconds: float  # wall time of detection and landmarks

    def describe(self) -> str:
        """One sentence for a reader: the detector, the scale, the extra pass and why, the wall time."""
        how = f"dlib's HOG detector (frontal faces) found {len(self.faces)} face(s) at {self.side} px"
        if self.upsampled:
            how += f", then 2x upsampled because {self.why_upsampled}"
        return f"{how}: {self.seconds:.2f} s"


def hog_passes(detector, image: np.ndarray) -> tuple[list, list[float], str]:
    """Run dlib's HOG ``detector`` on ``image`` (H x W x 3 uint8), upsampling only when it pays.

    Returns (rectangles, scores, why the 2x pass ran: "" when it did not)."""
    if max(image.shape[:2]) <= UPSAMPLE_BELOW:
        rects, scores, _ = detector.run(image, 1, 0.0)
        return list(rects), list(scores), f"the photo is small (at most {UPSAMPLE_BELOW} px)"
    rects, scores, _ = detector.run(image, 0, 0.0)
    if not rects:
        why = "no face was found at 1x"
    elif min(r.width() for r in rects) < SMALL_FACE:
        why = f"the smallest face at 1x was {min(r.width() for r in rects)} px wide, near the detector's ~80 px limit"
    else:
        return list(rects), list(scores), ""
    big, big_scores, _ = detector.run(image, 1, 0.0)
    # The 2x pyramid covers the 1x scales too, but its levels fall elsewhere: a face only the 1x pass caught
    # (no 2x box holds its centre) is kept.
    kept = [(r, s) for r, s in zip(rects, scores) if not any(b.contains(r.center()) for b in big)]
    return list(big) + [r for r, _ in kept], list(big_scores) + [s for _, s in kept], why


class DlibFaceDetector:
    """``detect(rgb uint8 H x W x 3) -> list[DetectedFace]``, largest face first; ``find`` also says how."""

    def __init__(self, predictor_path):
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path))
        # dlib objects are not documented as thread-safe; Gradio calls handlers from threads.
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        return self.find(rgb).faces

    def find(self, rgb: np.ndarray) -> Detection:
        started = time.perf_counter()
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = rgb if scale == 1.0 else np.asarray(
            Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
        with self._lock:
            rects, scores, why = hog_passes(self.detector, small)
            faces = []
            for rect, score in zip(rects, scores):
                box = tuple(v / scale for v in (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1))
                full = dlib.rectangle(*(int(round(v)) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))
                shape = self.predictor(rgb, full)
                points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)
                faces.append(DetectedFace(box=box, landmarks=points, score=float(score)))
        faces.sort(key=lambda f: -f.area)
        return Detection(faces, side=max(small.shape[:2]), upsampled=bool(why), why_upsampled=why,
                         seconds=time.perf_counter() - started)


def build_dlib_detector(weights_path) -> DlibFaceDetector:
    """Registry builder for ``face-dlib-landmarks5``."""
    return DlibFaceDetector(weights_path)
