"""core.visualize: receptive fields, filter grids, the top-patch index, activation maps, maximisation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import weights
from core.engines import Accelerated
from core.errors import UserError
from core.visualize.__main__ import main
from core.visualize.activations import channel_grid, colormap, normalize_maps, overlay, strongest_channels
from core.visualize.filters import filter_grid, normalize_per_filter, tile
from core.visualize.layers import (
    default_layer,
    first_conv,
    generic_layers,
    layer_catalog,
    layer_output,
    layer_outputs,
    pytorch_view,
)
from core.visualize.maximize import COLOR_CORRELATION, ImageParam, Regularisers, maximize, spectrum_scale
from core.visualize.receptive_field import ReceptiveField, receptive_fields
from core.visualize.top_patches import (
    PatchIndex,
    _batches,
    build_index,
    find_index,
    list_images,
    load_index,
    page_sheet,
    read_set_image,
    scan,
    sheet_unit,
    update_top,
)


def small_net() -> nn.Sequential:
    """conv3 -> relu -> maxpool2 -> conv3 (dilation 2) -> relu: fields 3, 4, 12 by hand."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=2, dilation=2), nn.ReLU(),
    ).eval()


# --------------------------------------------------------------------------- receptive fields


def test_receptive_field_formula_by_hand():
    rf = ReceptiveField().through(kernel=3, stride=1, padding=1)
    assert (rf.size, rf.jump, rf.start) == (3, 1, 0)  # a 3x3 conv sees 3x3 pixels, centred
    rf = rf.through(kernel=2, stride=2)
    # pool 2/2: 3 + (2-1)*1 = 4 pixels, units 2 apart, unit 0 centred between pixels 0 and 1
    assert (rf.size, rf.jump, rf.start) == (4, 2, 0.5)
    rf = rf.through(kernel=3, stride=1, padding=2, dilation=2)
    # effective kernel 5: 4 + (5-1)*2 = 12; start 0.5 + (2 - 2)*2
    assert (rf.size, rf.jump, rf.start) == (12, 2, 0.5)
    # unit (1, 2) is centred at pixel (0.5 + 2, 0.5 + 4): box left = 4.5 - 5.5 = -1 -> floor -1
    assert rf.box(1, 2) == (-1, -3, 11, 9)


def test_receptive_fields_from_the_modules_match_the_gradient_support():
    net = small_net()
    fields = receptive_fields(net)
    assert fields["0"].size == 3 and fields["2"].size == 4 and fields["3"].size == 12
    # Empirically: the input pixels a centre unit depends on span exactly the computed box.
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    out = net[:4](x)
    y0, x0 = 9, 10
    out[0, :, y0, x0].sum().backward()
    rows, cols = np.nonzero(x.grad[0].abs().sum(0).numpy())
    left, top, right, bottom = fields["3"].box(y0, x0)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (left, top, right, bottom)


def test_the_first_view_is_the_first_layer_with_a_24_pixel_field():
    """conv1_1's 3 x 3-pixel patches are colour dots; from 24 pixels (VGG-19's conv3_1) the nine patches of a unit
    agree on an edge, a colour or a texture. A net whose fields stay small shows its deepest layer."""
    assert default_layer(layer_catalog("vgg19-caffe")) == "conv3_1"
    small = {"a": ("0", ReceptiveField(size=3)), "b": ("1", ReceptiveField(size=12))}
    assert default_layer(small) == "b"


def test_vgg19_catalog_names_and_fields():
    catalog = layer_catalog("vgg19-caffe")
    assert list(catalog)[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    sizes = {name: catalog[name][1].size for name in ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv5_4")}
    # 3, 3+2, +1, +2*2 ... the published VGG receptive fields
    assert sizes == {"conv1_1": 3, "conv1_2": 5, "pool1": 6, "conv2_1": 10, "conv5_4": 252}
    assert catalog["conv4_2"][0] == "21" and catalog["conv5_1"][1].jump == 16


def test_generic_layers_name_any_conv_net():
    layers = generic_layers(small_net())
    assert list(layers) == ["0", "1", "2", "3", "4"]
    assert first_conv(small_net()).out_channels == 4


def test_layer_outputs_stop_early_and_return_the_hooked_module():
    net = small_net()
    x = torch.rand(2, 3, 16, 16)
    out = layer_outputs(net, ["0", "3"], x)
    assert torch.allclose(out["0"], net[0](x))
    assert out["3"].shape == (2, 5, 8, 8)
    with pytest.raises(KeyError):
        layer_output(net, "9", x)


# --------------------------------------------------------------------------- filters


class Opaque(Accelerated):
    """An engine like OpenVINO: it keeps the PyTorch module but runs none of its layers."""

    def forward(self, x):
        return torch.zeros(len(x))


def test_layers_of_a_model_an_engine_serves_are_reached_through_its_pytorch_module():
    x = torch.rand(1, 3, 16, 16)
    net = small_net()
    expected = layer_output(net, "3", x)
    assert pytorch_view(Opaque(net, "openvino")) is net  # the whole model served by the engine
    served = nn.Sequential()
    served.add_module("pre", nn.Identity())
    served.add_module("body", Opaque(net, "openvino"))  # a part served by it (Mask R-CNN's encoder)
    view = pytorch_view(served)
    assert torch.equal(layer_output(view, "body.3", x), expected)
    assert isinstance(served.body, Opaque) and view.pre is served.pre  # the served model is left as it was
    assert pytorch_view(net) is net


def test_normalize_per_filter_by_hand():
    w = torch.tensor([[-1.0, 0.0, 1.0], [2.0, 2.0, 2.0]]).view(2, 1, 1, 3)
    out = normalize_per_filter(w).view(2, 3)
    assert torch.equal(out[0], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(out[1], torch.tensor([0.5, 0.5, 0.5]))  # constant filter -> mid grey


def test_tile_places_images_row_by_row():
    images = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2)
    grid = tile(images, ncols=3, pad=1, pad_value=-1)
    assert grid.shape == (1, 2 * 3 + 1, 3 * 3 + 1)
    assert grid[0, 1, 1] == 0 and grid[0, 1, 4] == 1 and grid[0, 4, 1] == 3 and grid[0, 4, 7] == -1


def test_vgg_filter_grid_shows_bgr_kernels_in_rgb(shared_weights):
    conv = first_conv(weights.load("vgg19-caffe"))
    grid = filter_grid(conv.weight, color_order="BGR", scale=4, ncols=8)
    assert grid.shape == (3, 8 * (12 + 2) + 2, 8 * (12 + 2) + 2)
    assert 0 <= grid.min() and grid.max() <= 1
    # top-left kernel: its red plane in the grid is the weight's last (R) input channel
    first = normalize_per_filter(conv.weight[:1])[0]
    assert torch.allclose(grid[0, 2:14:4, 2:14:4], first[2])
    with pytest.raises(ValueError):
        filter_grid(torch.zeros(4, 1, 3, 3))


# --------------------------------------------------------------------------- top patches


def test_update_top_keeps_the_best_per_unit_one_per_image():
    # 2 images, 2 units, 2x2 maps; unit 0 peaks at image 1 (1, 0), unit 1 at image 0 (0, 1)
    acts = torch.tensor([
        [[[1.0, 2.0], [3.0, 0.0]], [[0.0, 9.0], [0.0, 8.0]]],
        [[[0.0, 0.0], [7.0, 6.0]], [[5.0, 0.0], [0.0, 0.0]]],
    ])
    top = update_top(acts, torch.tensor([10, 11]), None, k=2, per_image=1)
    assert top.value.tolist() == [[7.0, 3.0], [9.0, 5.0]]
    assert top.image.tolist() == [[11, 10], [10, 11]]
    assert top.y.tolist() == [[1, 1], [0, 0]] and top.x.tolist() == [[0, 0], [1, 0]]
    # a later batch with a stronger response pushes the weakest out
    more = update_top(torch.full((1, 2, 2, 2), 4.0), torch.tensor([12]), top, k=2)
    assert more.value.tolist() == [[7.0, 4.0], [9.0, 5.0]] and more.image[0].tolist() == [11, 12]
    two = update_top(acts, torch.tensor([10, 11]), None, k=3, per_image=2)
    assert two.value.tolist() == [[7.0, 6.0, 3.0], [9.0, 8.0, 5.0]]


def _square_images(folder, n=5, side=40):
    """Grey images; image 3 alone holds a white 6x6 square at rows 20..25, cols 8..13."""
    folder.mkdir()
    for i in range(n):
        a = np.full((side, side, 3), 100, np.uint8)
        if i == 3:
            a[20:26, 8:14] = 255
        Image.fromarray(a).save(folder / f"img{i}.png")
    return folder


def test_a_page_sheet_holds_every_unit_and_a_click_finds_its_unit(tmp_path):
    """Seven units of nine patches each: a 3x3 grid of 10-px patches per unit (3 * 11 + 1 = 34 px), a caption band
    of 18 px, 10 px between units, three units to a row -> 3 * 44 - 10 = 122 by 3 * 62 - 10 = 176 pixels."""
    folder = _square_images(tmp_path / "set", n=9)
    names = list_images(str(folder))
    field = ReceptiveField().through(3, 1, 1)
    index = PatchIndex("tiny", "conv", field, str(folder), names, 64, np.ones((7, 9), np.float32),
                       np.tile(np.arange(9), (7, 1)), np.full((7, 9), 5), np.full((7, 9), 5))
    sheet = page_sheet(index, range(7), size=10, pad=1)
    assert sheet.size == (122, 176)
    assert sheet_unit(index, range(7), 5, 5, size=10, pad=1) == 0
    assert sheet_unit(index, range(7), 44 + 40, 62 + 30, size=10, pad=1) == 4  # second row, second unit
    assert sheet_unit(index, range(7), 5, 2 * 62 + 5, size=10, pad=1) == 6  # third row holds unit 6 alone
    assert sheet_unit(index, range(7), 44 + 5, 2 * 62 + 5, size=10, pad=1) is None
    assert sheet_unit(index, range(7), 3 * 44 + 1, 5, size=10, pad=1) is None


def test_scan_finds_the_patch_that_excites_a_brightness_unit(tmp_path):
    folder = _square_images(tmp_path / "set")
    net = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1)).eval()
    with torch.no_grad():  # unit 0 sums the 3x3 brightness: strongest inside the square
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    names = list_images(str(folder))
    tops = scan(net, lambda x: x, ["0"], _batches(str(folder), names, 64, 2), k=3)
    top = tops["0"]
    assert names[int(top.image[0, 0])] == "img3.png"
    assert 20 < int(top.y[0, 0]) < 25 and 8 < int(top.x[0, 0]) < 13
    assert top.value[0, 0] == pytest.approx(27.0)  # 9 pixels x 3 channels x 1.0
    index = PatchIndex("tiny", "conv", ReceptiveField().through(3, 1, 1), str(folder), names, 64,
                       top.value.numpy(), top.image.numpy(), top.y.numpy(), top.x.numpy())
    path = index.save(tmp_path / "idx" / "conv.npz")
    loaded = PatchIndex.load(path)
    assert loaded.names == names and np.array_equal(loaded.y, index.y)
    read_set_image.cache_clear()
    loaded.prefetch([0, 5])  # unit 5 does not exist: ignored
    assert read_set_image.cache_info().currsize == 3  # the 3 images unit 0's patches come from
    patch, value, name = loaded.patches(0, size=9)[0]
    assert name == "img3.png" and value == pytest.approx(27.0)
    assert np.asarray(patch).min() == 255  # the 3x3 field lies inside the white square
    assert loaded.unit_grid(0, size=9, pad=1).size == (2 * 10 + 1, 2 * 10 + 1)  # 3 patches -> 2x2 grid
    with pytest.raises(UserError):
        loaded.patches(1)


def test_cli_builds_an_index_from_which_vgg_patches_are_recomputed(shared, shared_weights, tmp_path):
    """Index 3 CamVid frames at 64 px, then check the stored activation against the patch itself."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in sorted((shared / "data" / "camvid" / "train").iterdir())[:3]:
        (folder / f.name).symlink_to(f)
    assert main(["index", "--model", "vgg19-caffe", "--images", str(folder), "--layers", "conv1_1,pool2",
                 "--index-dir", str(tmp_path / "idx"), "--max-side", "64", "--device", "cpu",
                 "--weights-dir", str(shared_weights)]) == 0
    index = load_index(find_index("vgg19-caffe", "conv1_1", tmp_path / "idx"))
    assert index.units == 64 and index.value.shape == (64, 3)
    assert sorted(set(index.image.ravel().tolist())) == [0, 1, 2]  # one patch per frame per unit
    deep = load_index(find_index("vgg19-caffe", "pool2", tmp_path / "idx"))
    assert deep.rf.size == 16 and deep.units == 128
    # conv1_1 of unit u at (y, x) is the kernel applied to the 3x3 patch around it
    conv = weights.load("vgg19-caffe")[0]
    record = weights.get_record("vgg19-caffe")
    for unit in (0, 17, 63):
        y, x = int(index.y[unit, 0]), int(index.x[unit, 0])
        image = read_set_image(index.source, index.names[int(index.image[unit, 0])], index.max_side)
        full = record.normalize(torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None])
        padded = nn.functional.pad(full, (1, 1, 1, 1))
        left, top, right, bottom = index.rf.box(y, x)
        patch = padded[0, :, top + 1:bottom + 1, left + 1:right + 1]
        expected = (conv.weight[unit] * patch).sum() + conv.bias[unit]
        assert float(expected) == pytest.approx(float(index.value[unit, 0]), rel=1e-3, abs=1e-2)


def test_unknown_layer_and_empty_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no layer"):
        build_index("vgg19-caffe", ["conv9_9"], str(tmp_path))
    with pytest.raises(UserError, match="holds no images"):
        list_images(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        list_images(str(tmp_path / "nope"))


def test_sample_set_is_scikit_image_pictures():
    names = list_images("skimage")
    assert "astronaut.png" in names and "chelsea.png" in names and len(names) >= 20


# --------------------------------------------------------------------------- activation maps


def test_colormap_and_normalisation_by_hand():
    rgb = colormap(torch.tensor([[0.0, 1.0]]))
    assert rgb.shape == (3, 1, 2)
    assert rgb[:, 0, 0].sum() < 0.1 and rgb[:, 0, 1].min() > 0.6  # dark -> bright yellow
    maps = torch.tensor([[[-1.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    assert normalize_maps(maps)[0].tolist() == [[0.0, 0.5], [0.25, 1.0]]
    assert normalize_maps(maps)[1].sum() == 0
    assert strongest_channels(maps, 5) == [0, 1]


def test_channel_grid_and_overlay():
    maps = torch.rand(6, 4, 5)
    assert channel_grid(maps, [5, 0, 2], ncols=3).shape == (3, 4 + 2 * 2, 3 * 5 + 4 * 2)
    image = torch.rand(3, 8, 10)
    silent = overlay(image, torch.zeros(4, 5))
    assert torch.allclose(silent, image)  # where the unit is silent, the image shows
    loud = overlay(image, torch.ones(4, 5), alpha=1.0)
    assert torch.allclose(loud, colormap(torch.ones(8, 10)), atol=1e-6)


# --------------------------------------------------------------------------- maximisation


def test_spectrum_scale_and_colour_matrix_by_hand():
    s = spectrum_scale(4, 4)
    # frequencies (cycles/pixel): DC floored at 1/4 -> 4; 0.25 -> 4; 0.5 -> 2; diagonal 0.25*sqrt2
    assert s.shape == (4, 3)
    assert s[0, 0] == 4 and s[0, 1] == 4 and s[0, 2] == 2 and s[1, 1] == pytest.approx(4 / 2**0.5)
    assert COLOR_CORRELATION.norm(dim=0).max() == pytest.approx(1.0)
    image = ImageParam(16, batch=2)()
    assert image.shape == (2, 3, 16, 16) and 0 < image.min() and image.max() < 1


def test_maximize_paints_what_a_red_minus_green_unit_wants():
    net = nn.Sequential(nn.Conv2d(3, 2, 1)).eval()
    with torch.no_grad():  # unit 1 = red - green: its best image is red
        net[0].weight.zero_()
        net[0].weight[1, :, 0, 0] = torch.tensor([1.0, -1.0, 0.0])
        net[0].bias.zero_()
    before = net[0].weight.clone()
    # Red minus green is a weak direction of ImageNet's decorrelated colours: a large step.
    image, history = maximize(net, "0", 1, lambda x: x, size=24, steps=30, lr=0.5)
    assert image.shape == (3, 24, 24)
    assert history[-1] > history[0] + 0.1  # scored on padded copies: grey borders dilute it
    red, green = image[0].mean(), image[1].mean()
    assert red > 0.65 and green < 0.3
    assert torch.equal(before, net[0].weight)  # the model is not trained
    plain, history = maximize(net, "0", 1, lambda x: x, size=24, steps=30, lr=0.1, reg=Regularisers.none())
    assert plain[0].mean() > plain[1].mean() + 0.3
    steps = []
    maximize(net, "0", 1, lambda x: x, size=24, steps=3, on_step=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 3), (2, 3), (3, 3)]  # one report per step: a progress bar that moves


def test_layer_outputs_leave_other_threads_forward_passes_alone():
    """The app shares one model between visitors: one visitor's layer hooks must not stop, or capture from,
    another visitor's forward pass running at the same time."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3)).eval()
    x = torch.randn(1, 3, 16, 16)
    inside, errors, full = threading.Event(), [], []
    release = threading.Event()

    class Gate(torch.nn.Module):  # holds thread A inside its hooked forward pass while thread B runs
        def forward(self, t):
            inside.set()
            release.wait(10)
            return t

    gated = torch.nn.Sequential(Gate(), *model)

    def hooked():
        try:
            layer_outputs(gated, ["1"], x)  # stops after the first conv
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    a = threading.Thread(target=hooked)
    a.start()
    inside.wait(10)
    try:
        with torch.no_grad():
            full.append(gated[1:](x))  # B: the whole network while A's hooks are registered
    finally:
        release.set()
        a.join(10)
    assert not errors and full[0].shape == (1, 2, 12, 12)
