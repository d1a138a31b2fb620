"""The style panel alone: layout, the streaming handler on a tiny image, operator caps, bad input."""

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from spaces import style as panel


@pytest.fixture()
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    content, style_ = tmp_path / "c.png", tmp_path / "s.png"
    yy, xx = np.mgrid[0:80, 0:80]
    Image.fromarray(np.stack([xx * 3, yy * 3, 255 - xx * 3], -1).astype(np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(style_)
    return str(content), str(style_)


def args(content, style_, **kw):
    values = dict(
        content_upload=content, style_upload=style_, style2_upload=None, blend=0.5, alpha=1.0, beta=1e3,
        layer_table=panel.default_layer_table(), content_layer="conv4_2", normalization="gatys", tv_weight=0.0,
        init="noise", optimizer="lbfgs", lr=0.02, steps=4, size=64, style_scale=1.0, keep_colors=False, seed=0,
        backbone_name="vgg19-caffe",
    )
    values.update(kw)
    return values


def test_panel_builds_with_its_api_and_stop_button():
    with gr.Blocks() as demo:
        panel.build()
    config = demo.get_config_file()
    names = {d.get("api_name") for d in config["dependencies"]}
    assert "stylize" in names
    # the stop button's event cancels the run
    assert any(d.get("cancels") for d in config["dependencies"])


def test_handler_streams_image_costs_and_gram_maps(shared_weights, pictures):
    outputs = list(panel.run_style(**args(*pictures, steps=4, style2_upload=pictures[0], blend=0.7)))
    image, plot, status, grams = outputs[-1]
    assert isinstance(image, Image.Image) and max(image.size) == 64
    assert list(plot["step"].unique()) == [1, 2, 3, 4] and set(plot["cost"]) == {"α·content", "β·style", "total"}
    assert "Step 4/4" in status and "ms per step" in status and "gatys" in status
    assert [caption.split(":")[0] for _, caption in grams] == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    assert grams[0][0].shape == (192, 2 * 192 + 8, 3)
    # the costs fall
    total = plot[plot["cost"] == "total"]["log10 cost"].tolist()
    assert total[-1] < total[0]


def test_layer_table_parsing():
    table = panel.default_layer_table()
    assert panel.parse_layer_table(table) == {name: 0.2
                                              for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")}
    assert panel.parse_layer_table([["conv3_2", "0.5"], ["conv1_1", 0]]) == {"conv3_2": 0.5}
    with pytest.raises(panel.UserError):
        panel.parse_layer_table([["conv9_9", 1]])
    with pytest.raises(panel.UserError):
        panel.parse_layer_table([["conv1_1", -1]])


def test_cost_frame_is_log10_per_curve():
    frame = panel.cost_frame([(1, 10.0, 1000.0, 1010.0)])
    assert dict(zip(frame["cost"], frame["log10 cost"])) == pytest.approx(
        {"α·content": 1.0, "β·style": 3.0, "total": np.log10(1010.0)})


def test_operator_caps_and_bad_input_are_one_sentence(monkeypatch, pictures):
    monkeypatch.setenv("CVHUB_STYLE_MAX_SIZE", "128")
    monkeypatch.setenv("CVHUB_STYLE_MAX_STEPS", "50")
    assert panel.max_size() == 128 and panel.max_steps() == 50
    for kw, words in [
        (dict(size=256), "up to 128 px"),
        (dict(steps=51), "up to 50 steps"),
        (dict(content_upload=None), "upload a content image"),
        (dict(layer_table=[["conv1_1", 0]]), "non-zero lambda"),
    ]:
        with pytest.raises(gr.Error, match=words):
            list(panel.run_style(**args(*pictures, **kw)))
