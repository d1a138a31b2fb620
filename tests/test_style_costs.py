"""The formulas of neural style transfer on numbers a person can check by hand."""

import pytest
import torch

from core.style.costs import (
    blend_grams,
    content_cost,
    gram_matrix,
    rescale_gram,
    style_cost,
    style_layer_cost,
    total_cost,
    total_variation,
)
from core.style.heatmaps import _RAMP, colorize, gram_pair


def act(*channels):
    """Activations of one image, 1 x C x 1 x W, one list of W numbers per channel."""
    return torch.tensor([[list(c)] for c in channels], dtype=torch.float32).unsqueeze(0)


def test_gram_matrix_sums_products_over_positions():
    # channel 0 = [1, 2], channel 1 = [3, 4]:
    # G00 = 1*1 + 2*2 = 5, G01 = 1*3 + 2*4 = 11, G11 = 3*3 + 4*4 = 25
    g = gram_matrix(act([1, 2], [3, 4]))
    assert g.shape == (1, 2, 2)
    assert g[0].tolist() == [[5, 11], [11, 25]]


def test_gram_matrix_is_batched_and_ignores_spatial_layout():
    a = act([1, 2, 3, 4], [0, 1, 0, 1])
    as_square = a.reshape(1, 2, 2, 2)  # the same numbers as a 2x2 map
    batch = torch.cat([a, 2 * a])
    assert torch.equal(gram_matrix(as_square), gram_matrix(a))
    # doubling the activations quadruples the Gram
    assert torch.equal(gram_matrix(batch)[1], 4 * gram_matrix(a)[0])


def test_gram_matrix_same_in_channels_last_layout():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(gram_matrix(a.contiguous(memory_format=torch.channels_last)), gram_matrix(a))


def test_content_cost_is_half_the_squared_distance():
    # 1/2 (1^2 + 2^2 + 2^2) = 4.5
    assert content_cost(act([0, 0, 0]), act([1, 2, 2])).tolist() == [4.5]
    # one target broadcast over a batch of two generated images
    batch = torch.cat([act([1, 0, 0]), act([0, 0, 3])])
    assert content_cost(act([0, 0, 0]), batch).tolist() == [0.5, 4.5]


def test_style_layer_cost_both_normalisations():
    g_style = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    g_gen = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    # ||G(S) - G(G)||_F^2 = 1^2 + 2^2 = 5
    assert style_layer_cost(g_style, g_gen, 2, 3, "lecture").tolist() == [2.5]  # 1/2 * 5
    # Gatys: 5 / (4 N^2 M^2) with N = 2 channels, M = 3 positions = 5 / 144
    assert style_layer_cost(g_style, g_gen, 2, 3, "gatys").item() == pytest.approx(5 / 144)
    with pytest.raises(ValueError):
        style_layer_cost(g_style, g_gen, 2, 3, "other")


def test_style_cost_weights_layers_with_lambda():
    # layer a: one channel [1, 2] -> G = 5, target 4 -> 1/2 (5-4)^2 = 0.5
    # layer b: one channel [3]    -> G = 9, target 7 -> 1/2 (9-7)^2 = 2
    acts = {"a": act([1, 2]), "b": act([3])}
    targets = {"a": torch.tensor([[[4.0]]]), "b": torch.tensor([[[7.0]]])}
    j = style_cost(targets, acts, {"a": 2.0, "b": 0.5}, "lecture")
    assert j.tolist() == [2 * 0.5 + 0.5 * 2]
    # a layer with lambda = 0 is skipped (and need not even be computed)
    assert style_cost(targets, {"a": acts["a"]}, {"a": 1.0, "b": 0.0}, "lecture").tolist() == [0.5]
    with pytest.raises(ValueError):
        style_cost(targets, acts, {"a": 0.0}, "lecture")


def test_style_cost_gradient_matches_the_derivation():
    # d/da 1/2 (G - G_S)^2 with G = sum_j a_j^2 is 2 (G - G_S) a: for a = [1, 2], G = 5, G_S = 4 -> [2, 4]
    a = act([1, 2]).requires_grad_(True)
    style_cost({"l": torch.tensor([[[4.0]]])}, {"l": a}, {"l": 1.0}, "lecture").sum().backward()
    assert a.grad.flatten().tolist() == [2.0, 4.0]


def test_total_variation_sums_squared_neighbour_differences():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    # vertical: (2-0)^2 + (3-1)^2 = 8; horizontal: (1-0)^2 + (3-2)^2 = 2
    assert total_variation(x).tolist() == [10.0]
    assert total_variation(torch.full((2, 3, 4, 4), 0.7)).tolist() == [0.0, 0.0]


def test_total_cost_weighs_content_style_and_tv():
    jc, js, tv = torch.tensor([3.0]), torch.tensor([5.0]), torch.tensor([7.0])
    assert total_cost(jc, js, alpha=2.0, beta=4.0).tolist() == [26.0]  # 2*3 + 4*5
    assert total_cost(jc, js, 2.0, 4.0, tv, tv_weight=0.5).tolist() == [29.5]  # + 0.5*7


def test_blend_grams_is_the_normalised_weighted_mean():
    grams = [{"l": torch.tensor([[[1.0]]])}, {"l": torch.tensor([[[3.0]]])}]
    # weights 1:3 -> 0.25 * 1 + 0.75 * 3 = 2.5
    assert blend_grams(grams, [1, 3])["l"].item() == pytest.approx(2.5)
    assert blend_grams(grams, [2, 2])["l"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        blend_grams(grams, [1])
    with pytest.raises(ValueError):
        blend_grams(grams, [0, 0])


def test_rescale_gram_keeps_per_position_statistics():
    # a pattern tiled twice as wide has twice the Gram; rescaling to the smaller size undoes that
    small, big = act([1, 2]), act([1, 2, 1, 2])
    assert torch.equal(rescale_gram(gram_matrix(big), 4, 2), gram_matrix(small))


def test_gram_heatmaps_share_one_scale():
    # the ramp's ends and its middle anchor
    assert torch.allclose(colorize(torch.tensor([[0.0, 0.5, 1.0]]))[:, 0].T, _RAMP[[0, 2, 4]])
    g = torch.tensor([[4.0, 1.0], [1.0, 0.0]])
    same_left, same_right = gram_pair(g, g, size=4)
    assert same_left.shape == (3, 4, 4) and torch.equal(same_left, same_right)
    # the generated Gram twice as large: its largest entry is the top of the shared scale, the style's is not
    left, right = gram_pair(g, 2 * g, size=2)
    assert torch.allclose(right[:, 0, 0], _RAMP[-1]) and not torch.allclose(left[:, 0, 0], _RAMP[-1])
