"""The lecture's face formulas on numbers checkable by hand: distances, triplet loss, mining, alignment."""

import math

import pytest
import torch

from core.faces.align import similarity_transform, template_points, warp_faces
from core.faces.distances import cosine_distance, l2_distance, pairwise_squared_l2, squared_l2
from core.faces.triplet import (
    batch_hard_triplet_loss,
    hardest_for_anchor,
    train_projection,
    train_same_different,
    triplet_loss,
)
from core.faces.verification import best_threshold, pair_accuracy


def test_distances_by_hand():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert squared_l2(a, b).tolist() == [25.0, 2.0]  # 3^2 + 4^2; 1 + 1
    assert l2_distance(a, b).tolist() == pytest.approx([5.0, math.sqrt(2)])
    # [1, 0] vs [0, 1]: orthogonal -> cosine distance 1; [1, 0] vs [2, 0]: same direction -> 0
    assert cosine_distance(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [2.0, 0.0]])).tolist() \
        == pytest.approx([1.0, 0.0])


def test_pairwise_is_one_matrix_product_of_the_same_distance():
    q = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    g = torch.tensor([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]])
    expected = [[25.0, 2.0, 4.0], [13.0, 0.0, 2.0]]  # e.g. (1-3)^2 + (1-4)^2 = 13
    assert torch.allclose(pairwise_squared_l2(q, g), torch.tensor(expected))
    torch.manual_seed(0)
    q, g = torch.randn(5, 16), torch.randn(40, 16)
    brute = squared_l2(q[:, None, :], g[None, :, :])
    assert torch.allclose(pairwise_squared_l2(q, g), brute, atol=1e-4)


def test_triplet_loss_by_hand_and_why_the_margin():
    a, p, n = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    # d(A,P) = 1, d(A,N) = 4: 1 - 4 + 0.2 < 0 -> 0 ; with margin 3.5: 1 - 4 + 3.5 = 0.5
    assert triplet_loss(a, p, n, 0.2).item() == 0.0
    assert triplet_loss(a, p, n, 3.5).item() == pytest.approx(0.5)
    # swapped roles (N closer than P): 4 - 1 + 0.2 = 3.2
    assert triplet_loss(a, n, p, 0.2).item() == pytest.approx(3.2)
    zeros = torch.zeros(1, 2)  # the all-zeros encoding f(x) = 0 ...
    assert triplet_loss(zeros, zeros, zeros, 0.0).item() == 0.0  # ... satisfies the rule with mu = 0
    assert triplet_loss(zeros, zeros, zeros, 0.2).item() == pytest.approx(0.2)  # but not with mu > 0


def test_hardest_positive_and_negative_by_hand():
    # anchor 0 at x=0; same person at x=1 and x=3 (hardest positive: x=3); others at x=2 and x=5 (hardest: x=2)
    e = torch.tensor([[0.0], [1.0], [3.0], [2.0], [5.0]])
    pos, neg, d = hardest_for_anchor(e, ["a", "a", "a", "b", "c"], 0)
    assert (pos, neg) == (2, 3)
    assert d.tolist() == [0.0, 1.0, 9.0, 4.0, 25.0]
    # batch-hard: anchor 0 -> 9 - 4 + 1 = 6; anchor 1 -> max(1, 4) - 1 + 1 = 4; anchor 2 -> 9 - 1 + 1 = 9
    # anchors 3 and 4 have no positive and are left out: mean(6, 4, 9) = 19 / 3
    loss = batch_hard_triplet_loss(e, torch.tensor([0, 0, 0, 1, 2]), margin=1.0)
    assert loss.item() == pytest.approx(19 / 3)


def test_similarity_transform_recovers_rotation_scale_shift():
    src = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    angle, scale, shift = math.radians(30), 2.0, torch.tensor([5.0, -1.0])
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = scale * src @ rot.T + shift
    m = similarity_transform(src, dst)[0]
    assert torch.allclose(m[:, :2], (scale * rot).double(), atol=1e-9)
    assert torch.allclose(m[:, 2], shift.double(), atol=1e-9)


def test_warp_puts_the_landmarks_on_the_template():
    # A black image with 5 white dots at known landmarks: after warping, the dots sit on the template.
    size = 64
    image = torch.zeros(3, 200, 300)
    landmarks = torch.tensor([[[180.0, 60.0], [150.0, 62.0], [80.0, 58.0], [110.0, 61.0], [130.0, 120.0]]])
    for x, y in landmarks[0].round().long().tolist():
        image[:, y - 1:y + 2, x - 1:x + 2] = 1.0
    chip = warp_faces(image, landmarks, size)[0, 0]
    target = template_points(size)
    for x, y in target.round().long().tolist():
        assert chip[y - 1:y + 2, x - 1:x + 2].max() > 0.3, (x, y)
    assert chip.sum() < 5 * 9 * 2  # nothing else lit up


def test_pair_accuracy_and_best_threshold_by_hand():
    d = torch.tensor([0.1, 0.2, 0.5, 0.6])
    same = torch.tensor([True, True, False, False])
    assert pair_accuracy(d, same, 0.15) == 0.75  # pair 2 (0.2, same) is called different
    tau, acc = best_threshold(d, same)
    assert acc == 1.0 and 0.2 < tau < 0.5


def test_projection_training_separates_and_logistic_head_learns():
    torch.manual_seed(0)
    centres = torch.randn(6, 16)
    labels = torch.arange(6).repeat_interleave(8)
    x = centres[labels] + 0.9 * torch.randn(len(labels), 16)  # overlapping clusters
    head, report = train_projection(x, labels, margin=0.5, steps=120, batch_size=48)
    assert report.losses[-1] < report.losses[0]
    gap_before = report.diff_before.mean() - report.same_before.mean()
    gap_after = report.diff_after.mean() - report.same_after.mean()
    assert gap_after > gap_before
    _, logistic = train_same_different(x, labels, steps=150)
    assert logistic.losses[-1] < logistic.losses[0] and logistic.accuracy > 0.7
