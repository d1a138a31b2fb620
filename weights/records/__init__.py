"""Every model record of the hub, one module per task; importing this registers them all."""

from weights.records import backbones  # noqa: F401
from weights.records import faces  # noqa: F401
from weights.records import instances  # noqa: F401
from weights.records import segmentation  # noqa: F401
from weights.records import style  # noqa: F401
