"""Is a photo like the model's training data? A segmentation network labels every pixel of any photo, a cat as
"Building" with 64 % of its pixels; its own confidence says when it is guessing.

The measure is the mean over pixels of the largest softmax probability (1.0: every pixel certain; 1 / C: every
pixel a uniform guess over C classes). On photos unlike its training data a network is less sure: the project's
CamVid models score every CamVid val frame above their record's ``confidence_floor`` and photos of cats, cups and
faces below it (``bench/familiarity.py`` measures both and prints the floors).
"""

from __future__ import annotations

import torch


def mean_max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W`` logits -> ``B`` mean over pixels of the largest class probability, in [1/C, 1]."""
    return logits.float().softmax(1).amax(1).flatten(1).mean(1)


def unfamiliar_note(confidence: float, floor: float | None, trained_on: str) -> str:
    """One sentence when ``confidence`` (:func:`mean_max_softmax`) is under the model's ``floor``, else "" (also
    where the model has no floor). ``trained_on`` names its training data, e.g. "CamVid's road scenes"."""
    if floor is None or confidence >= floor:
        return ""
    return (f"⚠ This photo looks unlike {trained_on}, the only photos this model was trained on: its mean "
            f"confidence is {100 * confidence:.0f} %, under the {100 * floor:.0f} % it reaches on every frame of its "
            "validation set, so take its classes as guesses.")
