"""The cost function of neural style transfer, as the lecture writes it (Gatys et al. 2016).

Every function takes batched activations ``a`` of shape ``B x C x H x W`` (``C`` = n_C
channels, ``H*W`` = n_H n_W positions) and returns one cost per batch element, shape ``B``.

    J(G) = alpha * J_content(C, G) + beta * J_style(S, G) [+ tv_weight * TV(G)]
"""

from __future__ import annotations

from typing import Mapping

import torch

#: How the per-layer style cost is scaled. ``"lecture"``: 1/2 ||G(S) - G(G)||_F^2 exactly
#: as written on the slide; ``"gatys"``: 1/(4 N^2 M^2) ||G(S) - G(G)||_F^2 with N = n_C and
#: M = n_H n_W (Gatys et al. 2016, eq. 4), which makes layers of different sizes comparable.
STYLE_NORMALIZATIONS = ("gatys", "lecture")


def gram_matrix(a: torch.Tensor) -> torch.Tensor:
    """Style matrix G_kk' = sum_i sum_j a_ijk a_ijk' (unnormalised).

    ``a``: B x C x H x W -> B x C x C. Computed in fp32 even under autocast: the sum runs over
    H*W products and bf16 would lose the small differences the style cost measures.
    """
    b, c, h, w = a.shape
    if c > 1 and a.is_contiguous(memory_format=torch.channels_last):
        # channels_last stores B x H x W x C: view it as B x HW x C (no copy) and take F^T F.
        flat = a.permute(0, 2, 3, 1).reshape(b, h * w, c).float()
        return torch.bmm(flat.transpose(1, 2), flat)
    flat = a.reshape(b, c, h * w).float()
    return torch.bmm(flat, flat.transpose(1, 2))


def content_cost(a_content: torch.Tensor, a_generated: torch.Tensor) -> torch.Tensor:
    """J_content(C, G) = 1/2 ||a[l](C) - a[l](G)||^2, summed over all units of layer l.

    Both ``B x C x H x W`` (``a_content`` may have batch 1 and broadcast) -> ``B``.
    """
    diff = a_generated.float() - a_content.float()
    return 0.5 * diff.pow(2).flatten(1).sum(1)


def style_layer_cost(
    gram_style: torch.Tensor, gram_generated: torch.Tensor, n_channels: int, n_positions: int,
    normalization: str = "gatys",
) -> torch.Tensor:
    """Style cost of one layer from the two style matrices (``B x C x C`` each) -> ``B``.

    ``normalization``: ``"lecture"`` gives 1/2 ||G(S) - G(G)||_F^2; ``"gatys"`` gives
    1/(4 N^2 M^2) ||G(S) - G(G)||_F^2 with N = ``n_channels``, M = ``n_positions`` (= H*W).
    """
    squared = (gram_generated - gram_style).pow(2).flatten(1).sum(1)
    if normalization == "lecture":
        return 0.5 * squared
    if normalization == "gatys":
        return squared / (4.0 * n_channels**2 * n_positions**2)
    raise ValueError(f"normalization must be one of {STYLE_NORMALIZATIONS}, not {normalization!r}")


def style_cost(
    grams_style: Mapping[str, torch.Tensor],
    activations_generated: Mapping[str, torch.Tensor],
    layer_weights: Mapping[str, float],
    normalization: str = "gatys",
) -> torch.Tensor:
    """J_style(S, G) = sum_l lambda[l] J_style[l](S, G) over the layers with a weight.

    ``grams_style[l]``: the style image's (precomputed) ``1|B x C x C``; ``activations_generated[l]``:
    ``B x C x H x W`` -> ``B``. The Grams are unnormalised sums over positions, so a style image of
    another size must have its Grams rescaled to the generated image's H*W first
    (:func:`rescale_gram`).
    """
    total = None
    for layer, weight in layer_weights.items():
        if weight == 0:
            continue
        a = activations_generated[layer]
        cost = style_layer_cost(grams_style[layer], gram_matrix(a), a.shape[1], a.shape[2] * a.shape[3], normalization)
        total = weight * cost if total is None else total + weight * cost
    if total is None:
        raise ValueError("at least one style layer needs a non-zero weight")
    return total


def rescale_gram(gram: torch.Tensor, positions_from: int, positions_to: int) -> torch.Tensor:
    """A Gram taken over ``positions_from`` = H*W positions, as if taken over ``positions_to``.

    G sums over positions, so a style image twice as large has twice the Gram; scaling by
    M_to / M_from keeps the per-position statistics, which is what "style" means.
    """
    return gram * (positions_to / positions_from)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences between vertically and horizontally adjacent pixels.

    ``x``: B x C x H x W -> ``B``. Penalises high-frequency noise; squared (not absolute) so its
    gradient is smooth, which L-BFGS prefers.
    """
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    return dh.float().pow(2).flatten(1).sum(1) + dw.float().pow(2).flatten(1).sum(1)


def total_cost(
    j_content: torch.Tensor, j_style: torch.Tensor, alpha: float, beta: float,
    tv: torch.Tensor | None = None, tv_weight: float = 0.0,
) -> torch.Tensor:
    """J(G) = alpha J_content + beta J_style (+ tv_weight TV(G)); all ``B`` -> ``B``."""
    j = alpha * j_content + beta * j_style
    if tv is not None and tv_weight:
        j = j + tv_weight * tv
    return j


def blend_grams(grams: list[Mapping[str, torch.Tensor]], blend: list[float]) -> dict[str, torch.Tensor]:
    """Several style images as one target: G_target[l] = sum_i w_i G_i[l] with w normalised to sum 1.

    Minimising ||G - sum w_i G_i||^2 has the same gradient as sum_i w_i ||G - G_i||^2 (up to a
    constant), at the cost of one comparison per layer instead of one per style image.
    """
    if len(grams) != len(blend):
        raise ValueError("one blend weight per style image is needed")
    weights = torch.tensor(blend, dtype=torch.float64)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("blend weights must be non-negative and not all zero")
    weights = (weights / weights.sum()).tolist()
    return {layer: sum(w * g[layer] for w, g in zip(weights, grams)) for layer in grams[0]}
