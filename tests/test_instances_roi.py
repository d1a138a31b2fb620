"""RoI Pool vs RoI Align: hand-checkable numbers, and the drawn geometry equals torchvision's ops."""

import pytest
import torch
from torchvision.ops import roi_align, roi_pool

from core.instances import roi


def ramp(height=6, width=6):
    """One channel whose value is the column index: f[y, x] = x, so a pooled value says where it read."""
    return torch.arange(width, dtype=torch.float32).expand(1, 1, height, width).clone()


def test_hand_checked_ramp_align_reads_the_exact_box_pool_snaps_it():
    # Box x from 0.5 to 2.5 px, stride 1, 1x2 bins. RoI Align (aligned=True) shifts by half a
    # cell: x in [0, 2], bins [0, 1] and [1, 2], one sample at each centre -> 0.5 and 1.5.
    # RoI Pool rounds 0.5 -> 1 and 2.5 -> 3 (C's round), so 3 cells [1, 4), bins of 1.5 cells
    # widened to [1, 3) and [2, 4) -> max 2 and 3: shifted right by the rounding.
    box = torch.tensor([[0, 0.5, 0.0, 2.5, 5.0]])
    feature = ramp()
    pooled = roi_pool(feature, box, output_size=(1, 2), spatial_scale=1.0)
    aligned = roi_align(feature, box, output_size=(1, 2), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    assert pooled.flatten().tolist() == [2.0, 3.0]
    assert aligned.flatten().tolist() == [0.5, 1.5]
    geometry = roi.pool_bins(box[0, 1:].tolist(), spatial_scale=1.0, out=2, feature_size=(6, 6))
    assert geometry.box_cells[0::2] == (1, 3)
    assert [c[2:] for c in geometry.cells[0]] == [(1, 3), (2, 4)]
    samples = roi.align_samples(box[0, 1:].tolist(), spatial_scale=1.0, out=2, sampling_ratio=1)
    assert samples.edges_x == [0.0, 1.0, 2.0]
    assert samples.points[0, :, 0, 1].tolist() == [0.5, 1.5]


def test_c_round_goes_away_from_zero():
    assert [roi._c_round(v) for v in (0.5, 1.5, 2.5, -0.5, 2.49)] == [1, 2, 3, -1, 2]


@pytest.mark.parametrize("scale", [1.0, 1 / 16])
def test_pool_bins_reproduce_torchvision_roi_pool(scale):
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(1, 3, 11, 13, generator=g)
    size = 1 / scale
    for _ in range(25):
        x1, y1 = (torch.rand(2, generator=g) * torch.tensor([9.0, 7.0]) * size).tolist()
        w, h = (torch.rand(2, generator=g) * 5 * size + 0.3 * size).tolist()
        box = [x1, y1, x1 + w, y1 + h]
        pooled, _ = roi.pool_both(feature, torch.tensor([[0.0, *box]]), spatial_scale=scale, out=3)
        geometry = roi.pool_bins(box, spatial_scale=scale, out=3, feature_size=(11, 13))
        expected = torch.stack([
            torch.stack([
                feature[0, :, y0:y1_, x0:x1_].amax(dim=(1, 2)) if y1_ > y0 and x1_ > x0 else torch.zeros(3)
                for (y0, y1_, x0, x1_) in row
            ], dim=-1) for row in geometry.cells
        ], dim=-2)
        torch.testing.assert_close(pooled[0], expected)


@pytest.mark.parametrize("ratio", [1, 2, 0])
def test_align_samples_reproduce_torchvision_roi_align(ratio):
    g = torch.Generator().manual_seed(1)
    feature = torch.randn(1, 4, 9, 10, generator=g)
    for _ in range(25):
        x1, y1 = (torch.rand(2, generator=g) * torch.tensor([120.0, 100.0])).tolist()
        w, h = (torch.rand(2, generator=g) * 60 + 4).tolist()
        box = [x1, y1, x1 + w, y1 + h]
        _, aligned = roi.pool_both(feature, torch.tensor([[0.0, *box]]), spatial_scale=1 / 16, out=4,
                                   sampling_ratio=ratio)
        samples = roi.align_samples(box, spatial_scale=1 / 16, out=4, sampling_ratio=ratio)
        expected = roi.bilinear(feature[0], samples.points).mean(dim=2).permute(2, 0, 1)
        torch.testing.assert_close(aligned[0], expected.float(), atol=1e-5, rtol=1e-5)


def test_bilinear_is_exact_on_a_plane_and_zero_far_outside():
    yy, xx = torch.meshgrid(torch.arange(5.0), torch.arange(7.0), indexing="ij")
    plane = (2 * yy + 3 * xx).unsqueeze(0)
    points = torch.tensor([[1.25, 2.5], [3.0, 0.0], [0.5, 5.75], [-2.0, 1.0]], dtype=torch.float64)
    values = roi.bilinear(plane, points)[:, 0].tolist()
    assert values == pytest.approx([2 * 1.25 + 3 * 2.5, 6.0, 1 + 3 * 5.75, 0.0])
