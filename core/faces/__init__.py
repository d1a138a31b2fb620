"""Faces: detect -> align (5 landmarks) -> embed f(x) -> compare d(x1, x2) = ||f(x1) - f(x2)||^2.

Two interchangeable backends behind :class:`core.faces.pipeline.FacePipeline`:
dlib's ResNet (default, from the PyPI packages ``dlib-bin`` + ``face-recognition-models``)
and a FaceNet-style InceptionResnetV1 in torch (weights from the Hugging Face Hub).
"""

from core.faces.distances import cosine_distance, l2_distance, pairwise_squared_l2, squared_l2
from core.faces.pipeline import BACKENDS, DEFAULT_BACKEND, FacePipeline, FaceSet, load_pipeline

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "FacePipeline", "FaceSet", "cosine_distance", "l2_distance",
    "load_pipeline", "pairwise_squared_l2", "squared_l2",
]
