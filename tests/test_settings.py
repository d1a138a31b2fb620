"""One way to say where the weights are: every entry point takes --weights-dir and CVHUB_WEIGHTS_DIR alike
(the flag wins), through core.runtime's one Settings.from_env."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import app
import weights
from core import runtime
from core.errors import UserError
from tests.conftest import REPO, SHARED

CAMVID_VAL = SHARED / "data" / "camvid" / "val"
FRAME = sorted(CAMVID_VAL.iterdir())[0] if CAMVID_VAL.is_dir() else Path("missing")


def test_a_flag_wins_over_its_variable_and_the_variable_over_the_default(tmp_path):
    env = {"CVHUB_WEIGHTS_DIR": "/from/env", "CVHUB_DEVICE": "cpu", "CVHUB_MAX_BATCH_SIZE": "3"}
    assert runtime.Settings.from_env(env) == runtime.Settings("cpu", Path("/from/env"), 3)
    assert runtime.Settings.from_env(env, weights_dir="/flag", device="auto", max_batch_size=5) == \
        runtime.Settings("auto", Path("/flag"), 5)
    assert runtime.Settings.from_env({}) == runtime.Settings()
    app_env = {"CVHUB_GALLERY": "/g.db", "CVHUB_CONCURRENCY": "4"}
    assert runtime.Settings.from_env(app_env) == runtime.Settings(gallery=Path("/g.db"), concurrency=4)
    assert runtime.Settings.from_env(app_env, gallery="/other.db", concurrency=1) == \
        runtime.Settings(gallery=Path("/other.db"), concurrency=1)
    with pytest.raises(UserError, match="device must be one of"):
        runtime.Settings.from_env({"CVHUB_DEVICE": "tpu"})
    assert runtime.Settings.from_env({"CVHUB_ENGINES": "openvino, bf16"}).engines == ("openvino", "bf16")
    with pytest.raises(UserError, match="CVHUB_ENGINES may list"):
        runtime.Settings.from_env({"CVHUB_ENGINES": "openvino,tensorrt"})
    # The app reads the same flags through the same function.
    args = app.parse_args(["--weights-dir", str(tmp_path), "--device", "cpu"])
    assert runtime.Settings.from_args(args, env) == runtime.Settings("cpu", tmp_path, 3)


def _frames(tmp_path) -> tuple[Path, Path]:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    (images / FRAME.name).symlink_to(FRAME)
    (labels / f"{FRAME.stem}.png").symlink_to(SHARED / "data" / "camvid" / "valannot" / f"{FRAME.stem}.png")
    return images, labels


#: One cheap command per CLI that needs the ImageNet VGG-19 file, which only ../shared/weights holds.
COMMANDS = {
    "segmentation": lambda d: ["core.segmentation", "evaluate", "--model", "fcn8s-vgg19-camvid", "--images",
                               str(d[0]), "--labels", str(d[1]), "--json"],
    "instances": lambda d: ["core.instances", "predict", str(FRAME), "--model", "maskrcnn-vgg19-camvid", "--json"],
    "style": lambda d: ["core.style", "transfer", "--content", str(FRAME), "--style", str(FRAME), "--size", "64",
                        "--steps", "1", "--json", "--out", str(d[0].parent / "out.png")],
    "visualize": lambda d: ["core.visualize", "index", "--model", "vgg19-caffe", "--layers", "conv1_1", "--images",
                            str(d[0]), "--index-dir", str(d[0].parent / "index"), "--max-side", "64"],
}


@pytest.mark.parametrize("cli", sorted(COMMANDS))
@pytest.mark.parametrize("how", ["variable", "flag over variable"])
def test_every_cli_finds_the_weights_by_flag_or_variable(cli, how, shared, tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    command = [sys.executable, "-m", *COMMANDS[cli](_frames(tmp_path))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVHUB_")}
    env["CVHUB_OFFLINE"] = "1"  # a missing VGG-19 must not be rebuilt from the package index here
    env["CVHUB_CACHE_DIR"] = str(tmp_path / "cache")  # nor found in this user's cache from an earlier rebuild
    if how == "variable":
        env["CVHUB_WEIGHTS_DIR"] = str(shared / "weights")
    else:  # the variable points at an empty folder; the flag must decide
        env["CVHUB_WEIGHTS_DIR"] = str(empty)
        command += ["--weights-dir", str(shared / "weights")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # ... and without either, the same command says which file is missing (nothing is found by accident).
    if how == "variable":
        env["CVHUB_WEIGHTS_DIR"] = str(empty)
        missing = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert missing.returncode != 0 and "vgg19_features_fp16.safetensors" in missing.stdout + missing.stderr


def test_create_takes_every_file_of_a_model_from_the_folder_it_is_given(shared, monkeypatch, tmp_path):
    """The frozen-encoder models need two files, the decoder (shipped) and the ImageNet VGG-19 (operator's):
    ``create(name, weights_dir=X)`` finds the second in X too, whatever the process's settings say."""
    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=tmp_path))  # an empty folder
    model = weights.create("fcn8s-vgg19-camvid", weights_dir=shared / "weights")
    assert not model.training
