"""CamVid's object classes as instances: connected components of the car, pedestrian and bicyclist pixels.

CamVid (SegNet's version) labels classes, not objects, so an instance here is one
8-connected component of one class's pixels. Objects of one class that touch (a row of
parked cars, a group of pedestrians) merge into one instance, for training and for
evaluation alike; components under ``min_area`` pixels (a few stray labels) are dropped.
"""

from __future__ import annotations

import numpy as np
import torch

from core.datasets.camvid import CAMVID_CLASSES, INSTANCE_CLASSES

#: Smallest component kept, in pixels of the 480x360 label map.
MIN_AREA = 50


def instances_from_labels(label_map: torch.Tensor | np.ndarray, min_area: int = MIN_AREA) -> dict[str, torch.Tensor]:
    """HxW class indices -> {"boxes": Nx4 float (x1, y1, x2, y2), "labels": N int64 (1..3), "masks": NxHxW uint8}.

    Boxes enclose the mask's pixels: a single pixel at (x, y) has the box (x, y, x + 1, y + 1).
    """
    from skimage.measure import label as connected_components  # noqa: PLC0415 (0.3 s import; train and eval only)

    label_map = np.asarray(label_map)
    boxes, labels, masks = [], [], []
    for det_label, name in enumerate(INSTANCE_CLASSES, start=1):
        components = connected_components(label_map == CAMVID_CLASSES.index(name.capitalize()), connectivity=2)
        for k in range(1, components.max() + 1):
            mask = components == k
            if mask.sum() < min_area:
                continue
            ys, xs = np.nonzero(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(det_label)
            masks.append(mask)
    h, w = label_map.shape
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": (torch.from_numpy(np.stack(masks)).to(torch.uint8) if masks
                  else torch.zeros(0, h, w, dtype=torch.uint8)),
    }
