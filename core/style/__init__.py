"""Neural style transfer (Gatys et al. 2016): the lecture's cost function and its optimisation.

``costs`` holds the formulas (Gram matrix, content, style and total-variation costs),
``features`` the VGG-19 layers it reads (taps of :class:`core.backbones.vgg.VGGEncoder`),
``transfer`` the optimisation loop as a generator of progress, ``heatmaps`` pictures of
style matrices. ``python -m core.style`` is the command line.
"""

from core.style.costs import content_cost, gram_matrix, style_cost, style_layer_cost, total_cost, total_variation
from core.style.features import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, LAYER_NAMES
from core.style.transfer import Progress, TransferConfig, keep_colors, transfer

__all__ = [
    "DEFAULT_CONTENT_LAYER", "DEFAULT_STYLE_LAYERS", "LAYER_NAMES", "Progress",
    "TransferConfig", "content_cost", "gram_matrix", "keep_colors", "style_cost", "style_layer_cost",
    "total_cost", "total_variation", "transfer",
]
