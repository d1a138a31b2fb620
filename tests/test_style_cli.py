"""The command line (python -m core.style transfer ... --json) and the choice of backbone."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as save_safetensors
from safetensors.torch import save_file

import weights
from core import runtime
from core.backbones.vgg import load_timm_state
from core.errors import MissingWeights
from core.style import __main__ as cli
from core.style.backbone import load_backbone
from tests.hubstub import serve_hub


@pytest.fixture(autouse=True)
def restore_settings(monkeypatch):
    """main() installs its settings (runtime.use); put the process-wide settings back afterwards."""
    monkeypatch.setattr(runtime, "_settings", runtime.settings())


@pytest.fixture()
def pictures(tmp_path):
    yy, xx = np.mgrid[0:60, 0:90]
    Image.fromarray(np.stack([xx * 2, yy * 4, 255 - xx * 2], -1).astype(np.uint8)).save(tmp_path / "c.png")
    rgba = np.random.default_rng(1).integers(0, 256, (50, 50, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "s.png")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40), dtype=np.uint8), "L").save(tmp_path / "s2.png")
    return tmp_path


def test_transfer_json_summary_and_output_file(shared, pictures, capsys):
    out = pictures / "out.png"
    rc = cli.main(["transfer", "--content", str(pictures / "c.png"), "--style", str(pictures / "s.png"),
                   "--style", str(pictures / "s2.png"), "--blend", "3,1", "--size", "48", "--steps", "3",
                   "--style-layers", "conv1_1:0.5,conv3_1", "--out", str(out), "--json", "--device", "cpu",
                   "--weights-dir", str(shared / "weights")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["backbone"] == "vgg19-caffe" and summary["size"] == [32, 48]
    assert summary["total_cost"] == pytest.approx(summary["content_cost"] + 1e3 * summary["style_cost"], rel=1e-5)
    assert summary["seconds"] > 0
    assert Image.open(out).size == (48, 32)


def test_bad_arguments_are_one_sentence(pictures, capsys):
    base = ["transfer", "--content", str(pictures / "c.png"), "--style", str(pictures / "s.png"), "--steps", "1"]
    assert cli.main(base + ["--blend", "1,2"]) == 2
    assert "2 weights but there are 1 style images" in capsys.readouterr().err
    assert cli.main(base + ["--style-layers", "conv9_1"]) == 2
    assert "Unknown VGG-19 layer 'conv9_1'" in capsys.readouterr().err
    assert cli.main(["transfer", "--content", str(pictures / "missing.png"), "--style", str(pictures / "s.png")]) == 2
    assert "not found" in capsys.readouterr().err


def test_style_layer_weights_default_to_an_equal_share():
    # a layer without ":lambda" gets 1 / (number of layers listed)
    assert cli.parse_style_layers("conv1_1,conv2_1:0.3,conv3_1") == pytest.approx(
        {"conv1_1": 1 / 3, "conv2_1": 0.3, "conv3_1": 1 / 3})
    assert cli.parse_style_layers("conv1_1,conv2_1") == {"conv1_1": 0.5, "conv2_1": 0.5}


def test_backbone_falls_back_to_weights_on_disk_and_says_so(shared_weights):
    features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    asked = []

    def loader(name):
        asked.append(name)
        if name == "vgg19.tv_in1k":
            raise MissingWeights("no hub here")
        return features

    backbone = load_backbone("vgg19.tv_in1k", loader=loader)
    assert backbone.name == "vgg19-caffe" and asked == ["vgg19.tv_in1k", "vgg19-caffe"]
    assert "vgg19.tv_in1k" in backbone.note and "vgg19-caffe is used" in backbone.note
    # Caffe preprocessing comes with the Caffe weights: white -> BGR 255 minus the mean
    assert backbone.normalize(torch.ones(1, 3, 1, 1)).flatten().tolist() == pytest.approx(
        [255 - 103.939, 255 - 116.779, 255 - 123.68])
    assert load_backbone("vgg19-caffe", loader=loader).note == ""
    with pytest.raises(ValueError):
        load_backbone("resnet50", loader=loader)


def timm_vgg19_file(path):
    """A file laid out like timm's vgg19.tv_in1k: ``features.{i}.*`` plus a classifier; biases mark the layers."""
    state, index, c_in = {}, 0, 3
    for c_out in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512):
        if c_out == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.zeros(c_out, c_in, 3, 3, dtype=torch.half)
        state[f"features.{index}.bias"] = torch.full((c_out,), index / 100, dtype=torch.half)
        index, c_in = index + 2, c_out
    state["pre_logits.fc1.weight"] = torch.zeros(4, 4).half()
    state["head.fc.weight"] = torch.zeros(2, 4).half()
    path.parent.mkdir(parents=True)
    save_file(state, str(path))


def test_timm_vgg19_record_loads_the_conv_part_with_imagenet_preprocessing(tmp_path):
    timm_vgg19_file(tmp_path / "vgg19.tv_in1k" / "model.safetensors")
    features = weights.create("vgg19.tv_in1k", weights_dir=tmp_path)
    assert features[0].bias[0].item() == 0.0 and features[34].bias[0].item() == pytest.approx(0.34, abs=1e-3)
    assert features[0].weight.abs().sum() == 0 and len(features) == 37  # no classifier
    # RGB, (x - mean) / std: ImageNet's mean colour maps to 0
    normalize = weights.get_record("vgg19.tv_in1k").normalize
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    assert normalize(mean).abs().max() < 1e-6


def test_timm_vgg19_record_downloads_from_its_pinned_hub_revision(tmp_path, monkeypatch):
    """The record's repo, file and revision through the real huggingface_hub, against the stand-in Hub."""
    source = weights.get_record("vgg19.tv_in1k").source
    data = save_safetensors({"features.0.bias": torch.arange(64, dtype=torch.half),
                             "head.fc.weight": torch.zeros(2, 2)})
    with serve_hub({(source.repo_id, source.filename): data}, revision=source.revision) as (endpoint, _):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("CVHUB_OFFLINE", raising=False)
        # huggingface_hub reads its cache folder at import: resolve in a fresh process
        script = "import weights; print(weights.resolve(weights.get_record('vgg19.tv_in1k')))"
        done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip().splitlines()[-1]
    assert path.startswith(str(tmp_path / "hub")) and source.revision in path
    state = load_timm_state(path)
    assert list(state) == ["0.bias"] and state["0.bias"][63].item() == 63  # classifier dropped
