"""Other cities' streets: the training augmentation and the fixed proxy shifts, on numbers checked by hand."""

import torch

from core.datasets.camvid import VOID
from core.segmentation.data import augment_batch
from core.segmentation.shifts import PROXY_SHIFTS, SKY, apply_shift, paint_bonnet, recolour_sky, street_augment


def test_recolour_sky_paints_only_sky_pixels_with_the_gradient_times_their_texture():
    # A 2x2 frame: the top row is sky (grey 0.8 and 0.4, mean 0.6), the bottom row road (untouched).
    x = torch.tensor([[0.8, 0.4], [0.3, 0.3]]).expand(3, 2, 2).clone()
    labels = torch.tensor([[SKY, SKY], [3, 3]])
    top, bottom = torch.tensor([0.2, 0.4, 0.6]), torch.tensor([1.0, 1.0, 1.0])
    out = recolour_sky(x, labels, top, bottom)
    # Row 0 of a 2-row gradient is ``top``; texture = lum / mean sky lum = 0.8/0.6 and 0.4/0.6.
    assert torch.allclose(out[:, 0, 0], top * 0.8 / 0.6)
    assert torch.allclose(out[:, 0, 1], top * 0.4 / 0.6)
    assert torch.equal(out[:, 1], x[:, 1])
    # Half way: the mean of the frame and the blue.
    half = recolour_sky(x, labels, top, bottom, amount=0.5)
    assert torch.allclose(half[:, 0, 0], 0.5 * x[:, 0, 0] + 0.5 * top * 0.8 / 0.6)


def test_a_bonnet_covers_the_bottom_and_voids_its_labels():
    x, labels = torch.rand(3, 100, 80), torch.full((100, 80), 3)
    shaded, voided = paint_bonnet(x, labels, fraction=0.2, shade=0.1)
    # At the sides the bonnet starts at 1 - 0.8 * 0.2 = 84 % of the height, in the middle at 80 %.
    assert (voided[:, 0] == VOID).sum() == 16 and (voided[:, 40] == VOID).sum() in (20, 21)
    assert torch.equal(voided[:50], labels[:50]) and torch.equal(shaded[:, :50], x[:, :50])
    assert shaded[:, 99].max() <= 0.1 + 1e-6  # far below its edge the bonnet is its own grey


def test_the_proxy_shifts_keep_frames_and_labels_aligned():
    images = torch.randint(0, 256, (2, 3, 360, 480), dtype=torch.uint8)
    labels = torch.randint(0, 11, (2, 360, 480), dtype=torch.uint8)
    sizes = {}
    for name in PROXY_SHIFTS:
        x, y = apply_shift(name, images, labels)
        assert x.dtype == torch.uint8 and x.shape[0] == 2 and x.shape[-2:] == y.shape[-2:], name
        sizes[name] = tuple(y.shape[-2:])
    assert sizes == {"blue-sky": (360, 480), "wide": (240, 480), "bonnet": (360, 480), "phone": (360, 270)}
    assert torch.equal(apply_shift("wide", images, labels)[1], labels[:, 60:300])
    again = apply_shift("phone", images, labels)[0]
    assert torch.equal(again, apply_shift("phone", images, labels)[0])  # fixed: the same frames every time


def test_street_augmentation_draws_from_its_generator_and_only_ever_voids_labels():
    images = torch.randint(0, 256, (4, 3, 90, 120), dtype=torch.uint8)
    labels = torch.randint(0, 11, (4, 90, 120), dtype=torch.uint8)

    def run(seed):
        return augment_batch(images, labels, (90, 120), scale=(1.0, 1.0), street=True,
                             generator=torch.Generator().manual_seed(seed))

    (x1, y1), (x2, y2) = run(0), run(0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    plain = augment_batch(images, labels, (90, 120), scale=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(x1, plain[0])  # the street shifts changed some frame
    assert 0 <= x1.min() and x1.max() <= 1
    # Full-size crops at scale 1: each frame's labels are its own or their mirror image, where the street shifts
    # may only have added void (a bonnet).
    for y, own in zip(y1, labels.long()):
        kept = y != VOID
        assert torch.equal(y[kept], own[kept]) or torch.equal(y[kept], own.flip(-1)[kept])
    out, kept = street_augment(torch.rand(3, 8, 8), torch.full((8, 8), SKY), torch.Generator().manual_seed(1))
    assert out.shape == (3, 8, 8) and kept.shape == (8, 8)
