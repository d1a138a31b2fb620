"""Every model record of the hub, one module per task; importing this registers them all."""

from weights.records import backbones, faces, instances, segmentation, style  # noqa: F401
