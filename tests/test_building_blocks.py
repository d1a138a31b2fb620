"""The lab's functions reproduce the lecture's numbers."""

import torch

from core.building_blocks import (
    bed_of_nails_unpool,
    conv_output_size,
    convolve,
    max_pool_with_indices,
    max_unpool,
    nearest_unpool,
    transpose_conv_1d_formula,
    transpose_conv_contributions,
    transpose_conv_output_size,
    transpose_convolve,
)

LECTURE_INPUT = [[1, 3, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]


def test_max_pool_remembers_positions_and_unpool_puts_values_back():
    pooled, indices = max_pool_with_indices(LECTURE_INPUT)
    assert pooled.tolist() == [[5, 6], [7, 8]]
    # flat positions in the 4x4 input: 5 at (1,1)=5, 6 at (0,2)=2, 7 at (3,0)=12, 8 at (3,3)=15
    assert indices.tolist() == [[5, 2], [12, 15]]
    unpooled = max_unpool([[1, 2], [3, 4]], indices, output_size=(4, 4))
    assert unpooled.tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]


def test_nearest_and_bed_of_nails_unpooling():
    assert nearest_unpool([[1, 2], [3, 4]]).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert bed_of_nails_unpool([[1, 2], [3, 4]]).tolist() == [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]


def test_output_size_formulas():
    assert conv_output_size(4, 3, 1, 1) == 4  # "same" convolution
    assert conv_output_size(4, 3, 2, 1) == 2  # stride 2 halves
    assert conv_output_size(7, 3, 2, 0) == 3  # floor((7 - 3) / 2) + 1
    assert transpose_conv_output_size(2, 3, 2, 1) == 3  # (2-1)*2 - 2 + 3
    assert transpose_conv_output_size(2, 3, 2, 1, output_padding=1) == 4
    assert transpose_conv_output_size(2, 3, 2, 0) == 5  # the 1-D lecture example


def test_convolution_by_hand():
    x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    k = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]  # identity filter
    assert convolve(x, k, stride=1, padding=1).tolist() == x
    ones = [[1, 1, 1], [1, 1, 1], [1, 1, 1]]
    # stride 2 pad 1 samples the 3x3 sums centred at (0,0), (0,2), (2,0), (2,2)
    assert convolve(x, ones, stride=2, padding=1).tolist() == [[1 + 2 + 4 + 5, 2 + 3 + 5 + 6],
                                                               [4 + 5 + 7 + 8, 5 + 6 + 8 + 9]]


def test_transpose_convolution_sums_overlaps():
    # Lecture's 1-D example with numbers: a=2, b=3, x=5, y=7, z=11 -> [ax, ay, az+bx, by, bz]
    out = torch.nn.functional.conv_transpose1d(torch.tensor([[[2.0, 3.0]]]), torch.tensor([[[5.0, 7.0, 11.0]]]),
                                               stride=2)
    assert out.flatten().tolist() == [10, 14, 22 + 15, 21, 33]
    assert transpose_conv_1d_formula(["a", "b"], ["x", "y", "z"], stride=2) == ["ax", "ay", "az+bx", "by", "bz"]
    # 2-D, stride 2 pad 1, all-ones filter: the centre cell (1,1) of the 3x3 output receives all four inputs
    out2 = transpose_convolve([[1, 10], [100, 1000]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]], stride=2, padding=1)
    assert out2.tolist() == [[1, 11, 10], [101, 1111, 1010], [100, 1100, 1000]]


def test_transpose_contributions_match_the_op():
    contributions = transpose_conv_contributions((2, 2), (3, 3), stride=2, padding=1)
    assert sorted(contributions[(1, 1)]) == [((0, 0), (2, 2)), ((0, 1), (2, 0)), ((1, 0), (0, 2)), ((1, 1), (0, 0))]
    assert contributions[(0, 0)] == [((0, 0), (1, 1))]
    assert sum(len(v) for v in contributions.values()) == 4 * 9 - 4 * 5  # each input loses 5 cells to the padding crop
