"""detect -> align -> embed, for either backend, behind one interface.

``load_pipeline("dlib")`` or ``load_pipeline("facenet")`` gives a :class:`FacePipeline`
whose ``analyze(image)`` returns every face of a photo with its box, chip and embedding;
all faces of a photo are embedded in one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

import weights
from core.errors import UserError
from core.faces.detection import DetectedFace, Detection
from core.faces.inception_resnet import TorchFaceEmbedder
from weights.availability import availability

#: backend key -> (embedding model record, detector record)
BACKENDS = {
    "dlib": ("face-dlib-resnet", "face-dlib-landmarks5"),
    "facenet": ("face-facenet-vggface2", "face-dlib-landmarks5"),
}
DEFAULT_BACKEND = "dlib"
#: Below this face width (pixels) embeddings are unreliable: refuse rather than guess.
MIN_FACE_SIDE = 40


@dataclass
class FaceSet:
    """The faces of one photo, largest first.

    ``faces``: N detections; ``chips``: ``N x 3 x S x S`` uint8 aligned crops; ``embeddings``: ``N x D`` float32;
    ``size``: the photo's (width, height); ``detection``: how the faces were found (detector, scale, time).
    """

    faces: list[DetectedFace]
    chips: torch.Tensor
    embeddings: torch.Tensor
    backend: str
    size: tuple[int, int]
    detection: Detection
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.faces)

    def chip_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.chips[i].permute(1, 2, 0).numpy())

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Each face's box (x0, y0, x1, y1) in whole pixels, inside the photo: a face cut by the frame is boxed up
        to the edge (a box past it would be drawn as a stray line at the opposite edge, or point off the photo)."""
        return [f.inside(self.size) for f in self.faces]


class FacePipeline:
    """A detector (``detect``) and an embedder (``align``, ``embed``) with the backend's calibrated threshold.

    ``threshold`` is tau on the squared L2 distance: "same person" if ``d <= tau``.
    """

    def __init__(self, name: str, detector, embedder, threshold: float, description: str = ""):
        self.name = name
        self.detector = detector
        self.embedder = embedder
        self.threshold = threshold
        self.description = description

    def analyze(self, image, *, min_face: int = 0) -> FaceSet:
        """An RGB image (PIL or ``H x W x 3`` uint8) -> :class:`FaceSet` of all its faces.

        Faces narrower than ``min_face`` pixels are dropped (with a note).
        """
        rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
        detection = self.detector.find(rgb)
        faces = detection.faces
        notes = []
        if min_face:
            small = [f for f in faces if f.width < min_face]
            if small:
                notes.append(f"{len(small)} face(s) narrower than {min_face} pixels were ignored.")
            faces = [f for f in faces if f.width >= min_face]
        chips = self.embedder.align(rgb, faces)
        return FaceSet(faces, chips, self.embed_chips(chips), self.name, (rgb.shape[1], rgb.shape[0]), detection, notes)

    def embed_chips(self, chips: torch.Tensor) -> torch.Tensor:
        """``N x 3 x S x S`` uint8 aligned chips -> ``N x D`` float32."""
        return self.embedder.embed(chips)


def backend_availability(backend: str) -> str:
    """"" when ``backend``'s models run on this host now (on disk, or fetched from a server that answers);
    else one line on how to enable it. Downloads nothing."""
    if backend not in BACKENDS:
        raise UserError(f"Unknown face backend '{backend}'; choose one of: {', '.join(BACKENDS)}.")
    for name in BACKENDS[backend]:
        found = availability(name)
        if not found.runnable:
            return f"its weights ({name}) are not here, and {found.note}"
    return ""


def available_backends() -> list[str]:
    """The backends that run on this host now, default first."""
    return [b for b in BACKENDS if not backend_availability(b)]


def load_pipeline(backend: str = DEFAULT_BACKEND) -> FacePipeline:
    """The pipeline of ``backend`` ("dlib" or "facenet"), its models loaded once through ``weights.load``.

    A backend whose weights cannot come (see :func:`backend_availability`) fails at once with how to enable it,
    instead of waiting on a server known to be out of reach."""
    missing = backend_availability(backend)
    if missing:
        raise UserError(f"The {backend} backend cannot run here: {missing}.")
    model_name, detector_name = BACKENDS[backend]
    record = weights.get_record(model_name)
    model = weights.load(model_name)
    embedder = model if hasattr(model, "embed") else TorchFaceEmbedder(model, record.normalize, name=backend)
    return FacePipeline(backend, weights.load(detector_name), embedder,
                        threshold=float(record.metrics["threshold_sq_l2"]), description=record.description)


def default_threshold(backend: str = DEFAULT_BACKEND) -> float:
    """The backend's calibrated tau on the squared L2 distance, read from its record (no model is loaded)."""
    if backend not in BACKENDS:
        raise UserError(f"Unknown face backend '{backend}'; choose one of: {', '.join(BACKENDS)}.")
    return float(weights.get_record(BACKENDS[backend][0]).metrics["threshold_sq_l2"])


def pick_face(face_set: FaceSet, index: int, *, what: str = "photo", min_face: int = MIN_FACE_SIDE) -> int:
    """Check that ``face_set`` has a usable face number ``index`` (0 = largest); returns it or raises one sentence."""
    if len(face_set) == 0:
        raise UserError(f"No face was found in the {what}; please upload a photo where a face is clearly visible "
                        "and faces the camera.")
    if index >= len(face_set):
        raise UserError(f"The {what} has {len(face_set)} face(s); please pick a face number from 1 to {len(face_set)}.")
    width = face_set.faces[index].width
    if width < min_face:
        raise UserError(f"The chosen face in the {what} is only {width:.0f} pixels wide; please upload a photo where "
                        f"the face is at least {min_face} pixels wide.")
    return index
