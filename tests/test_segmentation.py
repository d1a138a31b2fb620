"""Semantic segmentation core: metrics and class weights by hand, padding, the four networks' shapes and mechanisms,
CamVid loading/augmentation, and a resumable training run on two frames."""

import json
import math
from types import SimpleNamespace

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from core.backbones import create_encoder
from core.backbones.vgg import VGG19_LAYERS, pretrained_state, vgg19_features
from core.datasets.camvid import CAMVID_CLASSES, VOID
from core.segmentation.data import augment_batch, enet_class_weights, load_camvid
from core.segmentation.enet import ENet, enet
from core.segmentation.evaluate import evaluate_model
from core.segmentation.fcn import FCN_TAPS, FCN8s, bilinear_kernel, learned_upsampling
from core.segmentation.frozen_vgg19 import frozen_vgg19, load_frozen_vgg19_state
from core.segmentation.metrics import confusion_matrix, scores
from core.segmentation.padding import pad_to_stride, run_padded
from core.segmentation.predict import segment_logits
from core.segmentation.release import release
from core.segmentation.segnet import SegNet, segnet_vgg19_frozen
from core.segmentation.train import init_weights, train
from core.segmentation.train_frozen import gather, train_frozen, trained_state
from core.segmentation.unet import UNet
from weights.palette import depalettize, palettize
from weights.registry import get_record, import_object, load_safetensors
from weights.resolve import resolve_extra

torch.set_num_threads(1)


def test_confusion_matrix_and_scores_by_hand():
    # truth    pred        (11 = void, ignored whatever the prediction)
    # 0 0 1    0 1 1
    # 1 2 11   1 2 0
    target = torch.tensor([[0, 0, 1], [1, 2, 11]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    conf = confusion_matrix(pred, target, num_classes=3, ignore_index=11)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    s = scores(conf)
    # class 0: tp 1, row 2, col 1 -> IoU 1/2, acc 1/2; class 1: tp 2, row 2, col 3 -> IoU 2/3, acc 1; class 2: 1, 1.
    assert s["iou"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert s["mIoU"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert s["class_accuracy"] == pytest.approx([0.5, 1.0, 1.0])
    assert s["class_avg"] == pytest.approx(2.5 / 3)
    assert s["global_accuracy"] == pytest.approx(4 / 5)


def test_absent_class_is_left_out_of_the_means():
    conf = torch.tensor([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
    s = scores(conf)
    assert math.isnan(s["iou"][2])
    assert s["mIoU"] == pytest.approx((3 / 4 + 4 / 5) / 2)


def test_enet_class_weights_formula():
    # Two classes of equal frequency: p = 0.5 each, w = 1 / ln(1.02 + 0.5).
    w = enet_class_weights(counts=(5, 5), num_classes=2)
    assert w.tolist() == pytest.approx([1 / math.log(1.52)] * 2, rel=1e-6)
    camvid = enet_class_weights()
    assert camvid.shape == (11,)
    # The rarest class (Bicyclist) weighs far more than the commonest (Road), and all stay below 1/ln(1.02).
    assert camvid[CAMVID_CLASSES.index("Bicyclist")] > 5 * camvid[CAMVID_CLASSES.index("Road")]
    assert float(camvid.max()) < 1 / math.log(1.02)


class _WidthModel(torch.nn.Module):
    """Logits = the width of the input it is given, at every pixel: says at which scale it ran."""

    stride = 1

    def forward(self, x):
        return torch.full_like(x[:, :1], float(x.shape[-1]))


def test_test_time_scales_average_the_logits_of_each_scale_at_the_input_size():
    """By hand: a 16-pixel-wide frame at scales 0.5, 1 and 2 runs 8, 16 and 32 pixels wide; the mean is 56/3 at
    every pixel of the 16 x 16 answer. The single scale keeps the plain call's logits (16)."""
    x = torch.rand(1, 3, 16, 16)
    same = lambda t: t  # noqa: E731
    assert torch.equal(segment_logits(_WidthModel(), x, normalize=same), torch.full((1, 1, 16, 16), 16.0))
    multi = segment_logits(_WidthModel(), x, normalize=same, scales=(0.5, 1.0, 2.0), flip=True)
    assert multi.shape == (1, 1, 16, 16) and torch.allclose(multi, torch.full_like(multi, 56 / 3))
    # Relative to the model's working scale: a model run at 1/2 sees 16 * 0.25 = 4 (raised to the 8-pixel minimum)
    # and 16 * 1 = 16 pixels: the mean is 12.
    assert torch.allclose(segment_logits(_WidthModel(), x, normalize=same, scale=0.5, scales=(0.5, 2.0)),
                          torch.full((1, 1, 16, 16), 12.0))


class _LeftRightModel(torch.nn.Module):
    """Class 0 on the left half of any frame, class 1 on the right half: a model that learnt the streets' layout."""

    stride = 1

    def forward(self, x):
        right = (torch.arange(x.shape[-1]) >= x.shape[-1] // 2).float().expand(len(x), 1, *x.shape[-2:])
        return torch.cat([1 - right, right], 1)


def test_mirror_scores_the_mirrored_frames_against_the_mirrored_labels():
    """By hand: labels are 0 on the left, 1 on the right, as the model says: mIoU 1. Mirrored, every pixel's label
    swaps sides but the model's answer does not: every pixel is wrong, mIoU 0."""
    record = SimpleNamespace(class_names=("left", "right"), input_size=None, normalize=lambda t: t)
    images = torch.randint(0, 256, (2, 3, 4, 6), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1, 1, 1], dtype=torch.uint8).expand(2, 4, 6)
    assert evaluate_model(_LeftRightModel(), record, images, labels)["mIoU"] == 1.0
    mirrored = evaluate_model(_LeftRightModel(), record, images, labels, mirror=True)
    assert mirrored["mIoU"] == 0.0 and mirrored["mirror"]


@pytest.mark.parametrize("size", [(37, 53), (64, 96), (5, 3)])
def test_pad_to_stride_then_crop_back(size):
    x = torch.arange(size[0] * size[1], dtype=torch.float32).reshape(1, 1, *size)
    padded, original = pad_to_stride(x, 8)
    assert original == size
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert padded.shape[-2] - size[0] < 8 and padded.shape[-1] - size[1] < 8
    assert torch.equal(padded[..., : size[0], : size[1]], x)  # the image itself is untouched
    y = run_padded(torch.nn.Identity(), x, stride=8)
    assert torch.equal(y, x)


class _RampModel(torch.nn.Module):
    """Logits = the first input channel plus 0, 1, ..., W-1 from left to right: not mirror-symmetric."""

    stride = 1

    def forward(self, x):
        return x[:, :1] + torch.arange(x.shape[-1], dtype=x.dtype)


def test_test_time_flip_averages_the_frame_and_its_mirror_mirrored_back():
    """By hand: the mirror's logits are x + (W-1-j), flipped back; the mean is x + (W-1)/2 at every column j.
    Forgetting to flip back would give (x + mirrored x) / 2, which differs on this asymmetric image."""
    x = torch.rand(2, 3, 4, 5)
    same = lambda t: t  # noqa: E731 (no normalisation: the numbers stay checkable)
    plain = segment_logits(_RampModel(), x, normalize=same)
    flipped = segment_logits(_RampModel(), x, normalize=same, flip=True)
    assert torch.allclose(plain, x[:, :1] + torch.arange(5.0))
    assert torch.allclose(flipped, x[:, :1] + 2.0)


def test_enet_shapes_parameters_and_any_size():
    model = ENet(11).eval()
    # The paper's ENet has 0.37 M parameters.
    assert 0.30e6 < sum(p.numel() for p in model.parameters()) < 0.40e6
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 96)).shape == (2, 11, 64, 96)
        assert run_padded(model, torch.randn(1, 3, 37, 53)).shape == (1, 11, 37, 53)


def _record_pool_and_unpool(monkeypatch):
    """Wrap F.max_pool2d / F.max_unpool2d to record the indices produced and consumed."""
    produced, consumed = [], []
    pool, unpool = F.max_pool2d, F.max_unpool2d

    def recording_pool(*args, **kwargs):
        out = pool(*args, **kwargs)
        if kwargs.get("return_indices"):
            produced.append(out[1])
        return out

    def recording_unpool(x, indices, *args, **kwargs):
        consumed.append(indices)
        return unpool(x, indices, *args, **kwargs)

    monkeypatch.setattr(F, "max_pool2d", recording_pool)
    monkeypatch.setattr(F, "max_unpool2d", recording_unpool)
    return produced, consumed


def test_segnet_decoder_unpools_with_the_encoders_indices(monkeypatch):
    produced, consumed = _record_pool_and_unpool(monkeypatch)
    model = SegNet(create_encoder("vgg19"), 11).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 96))
    assert y.shape == (1, 11, 64, 96)
    assert len(produced) == 5 and len(consumed) == 5
    # Decoder stage k unpools with the indices of encoder block 5-k: the very same tensors.
    assert all(c is p for c, p in zip(consumed, reversed(produced)))


def test_enet_decoder_unpools_with_the_downsampling_indices():
    model = ENet(11).eval()
    produced, consumed = [], []
    model.down1.register_forward_hook(lambda m, i, o: produced.append(o[1]))
    model.down2.register_forward_hook(lambda m, i, o: produced.append(o[1]))
    model.up4.register_forward_hook(lambda m, i, o: consumed.append(i[1]))
    model.up5.register_forward_hook(lambda m, i, o: consumed.append(i[1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 48))
    assert consumed[0] is produced[1] and consumed[1] is produced[0]


def test_fcn_bilinear_kernel_and_upsampling():
    k = bilinear_kernel(1, 2)[0, 0]
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(k, tent[:, None] * tent[None, :])
    x = torch.randn(1, 3, 6, 7)
    up = learned_upsampling(3, 2)
    with torch.no_grad():
        y = up(x)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert y.shape == ref.shape
    # Away from the border (where the transposed conv sees zero padding) it is bilinear interpolation.
    assert torch.allclose(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)


def test_fcn8s_fuses_pool3_and_pool4_scores():
    model = FCN8s(create_encoder("vgg19", taps=FCN_TAPS), 11).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        base = model(x)
        assert base.shape == (1, 11, 64, 64)
        model.head.score_pool3.bias.fill_(1.0)  # a constant added at stride 8 must reach the output
        shifted = model(x)
    assert not torch.allclose(base, shifted)
    # The block-end ReLUs end at stride 16: an FCN-8s on them would miss pool5.
    with pytest.raises(ValueError, match="strides 8, 16, 32"):
        FCN8s(create_encoder("vgg19"), 11)


def test_unet_concatenates_skips_on_a_timm_encoder():
    model = UNet(timm.create_model("resnet18", features_only=True, pretrained=False), 11).eval()
    channels = model.encoder.feature_info.channels()  # resnet18: 64, 64, 128, 256, 512 at strides 2..32
    first = model.decoder[0].convs[0]
    assert first.in_channels == channels[-1] + channels[-2]
    with torch.no_grad():
        assert run_padded(model, torch.randn(1, 3, 50, 70)).shape == (1, 11, 50, 70)


def test_unet_vgg_encoder_loads_vgg19_weights():
    model = UNet(create_encoder("vgg19"), 11)
    missing, unexpected = model.encoder.load_state_dict(vgg19_features().state_dict(), strict=False)
    assert not missing  # every encoder conv has a VGG-19 source
    assert model.stride == 16


def test_camvid_loading_and_augmentation(shared):
    data = load_camvid(shared / "data/camvid", "val", size=(90, 120), limit=2)
    assert data.images.shape == (2, 3, 90, 120) and data.images.dtype == torch.uint8
    assert data.labels.shape == (2, 90, 120) and int(data.labels.max()) <= VOID
    g = torch.Generator().manual_seed(0)
    x, y = augment_batch(data.images, data.labels, (64, 80), scale=(0.5, 0.5), generator=g)
    assert x.shape == (2, 3, 64, 80) and y.shape == (2, 64, 80)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    # Half of 90x120 is 45x60 < 64x80: the rest of the crop is void, so the loss ignores it.
    assert (y == VOID).float().mean() >= 1 - 45 * 60 / (64 * 80) - 1e-6


def test_flip_moves_image_and_labels_together():
    image = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    image[..., :4] = 255  # left half white
    label = torch.zeros(1, 8, 8, dtype=torch.uint8)
    label[..., :4] = 3  # left half road
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        x, y = augment_batch(image, label, (8, 8), scale=(1.0, 1.0), generator=g)
        bright = x[0].mean(0) > x[0].mean()
        assert torch.equal(bright, y[0] == 3)


def test_training_runs_checkpoints_and_resumes(shared, tmp_path):
    args = SimpleNamespace(
        model="enet-camvid", data=str(shared / "data/camvid"), out=str(tmp_path), epochs=2, batch_size=2,
        crop=(64, 96), scale=0.25, scale_range=(0.9, 1.1), lr=1e-3, weight_decay=0.0, threads=1,
        device="cpu", amp=True, resume=True, limit=2, time_limit=None, seed=0, init=None, holdout=None, compile=False,
        fixed_schedule=False, aspect_range=(0.8, 1.25), street_augment=True,
    )
    args.epochs = 1
    train(args)  # amp on a CPU: bf16 autocast
    first = torch.load(tmp_path / "last.pt", weights_only=True)
    assert first["epoch"] == 0 and (tmp_path / "best.pt").exists()
    args.epochs = 2
    train(args)
    second = torch.load(tmp_path / "last.pt", weights_only=True)
    assert second["epoch"] == 1  # continued from epoch 0, did not start over
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_training_can_start_from_a_released_file_and_refuses_one_of_another_model(tmp_path):
    released = enet(num_classes=11)
    state = {k: v.half() for k, v in released.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp_path / "enet.safetensors"))
    fresh = enet(num_classes=11)
    init_weights(fresh, tmp_path / "enet.safetensors")
    for k, v in state.items():
        assert torch.equal(fresh.state_dict()[k], v.float()), k

    save_file({k: v for k, v in state.items() if k.startswith("initial")}, str(tmp_path / "part.safetensors"))
    with pytest.raises(ValueError, match="does not fit the model"):
        init_weights(enet(num_classes=11), tmp_path / "part.safetensors")


def test_frozen_vgg19_taps_are_the_relus_that_vgg_max_pools():
    vgg = vgg19_features().eval()
    taps = frozen_vgg19().eval()
    taps.load_state_dict(vgg.state_dict())
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        got = taps(x)
        want, h = [], x
        for i, layer in enumerate(vgg):
            h = layer(h)
            if i in {VGG19_LAYERS[n] for n in ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")}:
                want.append(h)
    assert [tuple(t.shape) for t in got] == [(1, 64, 32, 64), (1, 128, 16, 32), (1, 256, 8, 16), (1, 512, 4, 8),
                                             (1, 512, 2, 4)]
    assert all(torch.allclose(g, w, atol=1e-5) for g, w in zip(got, want))


def test_segnet_on_vgg19_taps_unpools_with_the_indices_of_vggs_own_pools(monkeypatch):
    model = segnet_vgg19_frozen(11).eval()
    produced, consumed = _record_pool_and_unpool(monkeypatch)
    with torch.no_grad():
        taps = model.encoder(torch.randn(1, 3, 64, 96))
        assert model.decode(taps).shape == (1, 11, 64, 96)
    # The decoder pools each relu tap as VGG does (the cached taps stop before the pools) and unpools in mirror order.
    assert len(produced) == 5 and all(c is p for c, p in zip(consumed, reversed(produced)))


@pytest.mark.parametrize("name", ["fcn8s-vgg19-camvid", "segnet-vgg19-camvid", "unet-vgg19-camvid"])
def test_frozen_vgg19_models_train_only_their_decoder_and_load_it_plus_the_encoder(name, shared_weights, tmp_path):
    record = get_record(name)
    model = import_object(record.builder)().eval()
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen: only the decoder trains
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0
    with torch.no_grad():
        assert run_padded(model, torch.randn(1, 3, 50, 70)).shape == (1, 11, 50, 70)
    # The shipped file holds only the decoder; the loader adds the VGG-19 encoder from vgg19-caffe.
    shipped = {k: v.half() for k, v in trained_state(model).items()}
    assert shipped and not any(k.startswith("encoder.") for k in shipped)
    save_file(shipped, str(tmp_path / "decoder.safetensors"))
    state = load_frozen_vgg19_state(tmp_path / "decoder.safetensors", resolve_extra(record, 0))
    assert set(state) == set(model.state_dict())
    random_conv = model.encoder[0].weight.clone()
    model.load_state_dict(state, strict=True)
    assert not torch.equal(model.encoder[0].weight, random_conv)  # ImageNet weights, not the random init
    key = next(k for k in shipped if k.endswith("weight") and shipped[k].dim() == 4)
    assert torch.equal(model.state_dict()[key], shipped[key].float())


def test_gather_reads_rows_of_splits_as_if_concatenated():
    # Two splits of n = 2 frames; frame f of split k holds the value 10k + f in its one map and its labels.
    splits = [{"taps": [torch.tensor([10.0 * k, 10.0 * k + 1]).half().view(2, 1, 1, 1)],
               "labels": torch.tensor([10 * k, 10 * k + 1], dtype=torch.uint8).view(2, 1, 1)} for k in (0, 1)]
    maps, labels = gather(splits, torch.tensor([3, 0, 2]), "cpu")
    # Row 3 = frame 1 of split 1, row 0 = frame 0 of split 0, row 2 = frame 0 of split 1.
    assert maps[0].flatten().tolist() == [11.0, 0.0, 10.0] and maps[0].dtype == torch.float32
    assert labels.flatten().tolist() == [11, 0, 10] and labels.dtype == torch.int64


@pytest.mark.parametrize("model", ["segnet-vgg19-camvid", "unet-vgg19-camvid"])
def test_frozen_training_caches_taps_once_saves_only_the_decoder_and_resumes(model, shared, shared_weights, tmp_path):
    args = SimpleNamespace(
        model=model, data=str(shared / "data/camvid"), weights_dir=str(shared_weights), out=str(tmp_path / "run"),
        cache=str(tmp_path / "cache"), size=(64, 96), epochs=1, batch_size=2, lr=1e-3, weight_decay=0.0, amp=True,
        threads=1, device="cpu", resume=True, time_limit=None, limit=2, seed=0, holdout=None, fixed_schedule=False,
        mirror=False, tune_from=None, tune_lr_scale=0.1,
    )
    train_frozen(args)
    cached = tmp_path / "cache" / "train-64x96-relu1_2.relu2_2.relu3_4.relu4_4.relu5_4-limit2.pt"
    cache = torch.load(cached, weights_only=True)
    assert [tuple(t.shape) for t in cache["taps"]] == [(2, 64, 64, 96), (2, 128, 32, 48), (2, 256, 16, 24),
                                                       (2, 512, 8, 12), (2, 512, 4, 6)]
    assert cache["taps"][0].dtype == torch.float16 and cache["labels"].shape == (2, 64, 96)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["model"] and not any(k.startswith("encoder.") for k in best["model"])  # the encoder is not saved
    args.epochs = 2
    cache_time = cached.stat().st_mtime
    train_frozen(args)  # resumes at epoch 1 and reuses the cache
    assert cached.stat().st_mtime == cache_time
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


def test_fine_tuning_fcn8s_block5_trains_it_on_the_cached_pool4_ships_it_and_the_file_wins(shared, shared_weights,
                                                                                           tmp_path):
    args = SimpleNamespace(
        model="fcn8s-vgg19-camvid", data=str(shared / "data/camvid"), weights_dir=str(shared_weights),
        out=str(tmp_path / "run"), cache=str(tmp_path / "cache"), size=(64, 96), epochs=1, batch_size=2, lr=1e-3,
        weight_decay=0.0, amp=False, threads=1, device="cpu", resume=True, time_limit=None, limit=2, seed=0,
        holdout=None, fixed_schedule=False, mirror=False, tune_from="conv5_1", tune_lr_scale=0.1,
    )
    train_frozen(args)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    saved = last["model"]
    # Block 5 (conv5_1..conv5_4 = layers 28, 30, 32, 34) trains and is saved; the frozen layers before it are not.
    encoder_keys = sorted(k for k in saved if k.startswith("encoder."))
    assert encoder_keys == [f"encoder.{i}.{p}" for i in (28, 30, 32, 34) for p in ("bias", "weight")]
    imagenet = pretrained_state("vgg19-caffe", weights_dir=shared_weights)
    assert not torch.equal(saved["encoder.34.weight"], imagenet["34.weight"])  # it moved from ImageNet's weights
    head_lr, tail_lr = (g["lr"] for g in last["optimizer"]["param_groups"])
    assert tail_lr == pytest.approx(0.1 * head_lr) and head_lr > 0
    # The cache is the untuned model's own file (pool3-5): block 5 runs on its pool4, so nothing is encoded anew.
    assert (tmp_path / "cache" / "train-64x96-pool3.pool4.pool5-limit2.pt").exists()
    # Shipped, the file's block 5 wins over the ImageNet weights the loader adds.
    save_file({k: v.half() for k, v in saved.items()}, str(tmp_path / "fcn.safetensors"))
    state = load_frozen_vgg19_state(tmp_path / "fcn.safetensors", resolve_extra(get_record(args.model), 0))
    assert torch.equal(state["encoder.34.weight"], saved["encoder.34.weight"].half())
    assert torch.equal(state["encoder.0.weight"], imagenet["0.weight"])
    # The release ships block 5 in the file and its card says so.
    release(tmp_path / "run" / "best.pt", args.model, shared / "data/camvid", limit=1, weights_dir=tmp_path / "w",
            encoder_weights_dir=shared_weights)
    assert "encoder.28.weight" in load_safetensors(tmp_path / "w" / "fcn8s-vgg19-camvid.safetensors")
    card = (tmp_path / "w" / "cards" / "fcn8s-vgg19-camvid.md").read_text()
    assert "except its layers from conv5_1 on, fine-tuned here and shipped in this file" in card
    assert ("head was trained, with the encoder's layers from conv5_1 on (run each step on the cached map before "
            "them, at 0.1x") in card
    # Re-stored from that released file (no checkpoint), 8-bit with block 5 as its change from ImageNet's weights,
    # 4-bit: the file holds the changes, loading adds ImageNet's back, and the card names the release it came from.
    first = json.loads((tmp_path / "w" / "cards" / "fcn8s-vgg19-camvid.json").read_text())
    restored = release(tmp_path / "w" / "fcn8s-vgg19-camvid.safetensors", args.model, shared / "data/camvid", limit=1,
                       weights_dir=tmp_path / "w4", encoder_weights_dir=shared_weights, palette_bits=8,
                       delta_bits=4)
    with safe_open(str(tmp_path / "w4" / "fcn8s-vgg19-camvid.safetensors"), "pt") as f:
        assert "encoder.34.weight.delta.codes" in f.keys() and "encoder.34.weight.codes" not in f.keys()
        assert f.get_tensor("encoder.34.weight.delta.palette").shape == (512, 16)  # 4-bit changes, 8-bit head
        assert f.get_tensor("head.fc.0.weight.palette").shape == (256, 256)
    shipped = load_frozen_vgg19_state(tmp_path / "w" / "fcn8s-vgg19-camvid.safetensors", resolve_extra(
        get_record(args.model), 0))["encoder.34.weight"]
    loaded = load_frozen_vgg19_state(tmp_path / "w4" / "fcn8s-vgg19-camvid.safetensors", resolve_extra(
        get_record(args.model), 0))["encoder.34.weight"]
    plain4 = depalettize(palettize({"w": shipped}, bits=4))["w"].float()
    assert (loaded - shipped).norm() < (plain4 - shipped).norm() / 10
    facts = json.loads((tmp_path / "w4" / "cards" / "fcn8s-vgg19-camvid.json").read_text())
    assert facts["restored_from"] == first["sha256"] and facts["delta_bits"] == 4
    assert restored["sha256"] != first["sha256"]
    assert facts["run"] == first["run"] and facts["train_command"] == first["train_command"]
    card = (tmp_path / "w4" / "cards" / "fcn8s-vgg19-camvid.md").read_text()
    assert f"the file released as sha256 `{first['sha256']}`" in card
    assert "stored as their change from the ImageNet weights, 4-bit palettised" in card and "--delta-bits 4" in card
