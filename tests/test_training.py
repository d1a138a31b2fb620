"""The one training loop (core/training.py) and the three trainers on it: best and last checkpoints, resume (also from a
segmentation checkpoint written before the loop), the time budget summed over resumes, a held-out training sequence
for model selection or a fixed schedule with none, and the command line rebuilt from a run's saved arguments."""

import argparse
import json
import shlex
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from core import training
from core.datasets.camvid import CAMVID_CLASSES
from core.instances.camvid import instances_from_labels
from core.instances.release import release as release_instances
from core.instances.train import targets_at
from core.instances.train import train as train_instances
from core.segmentation.data import camvid_names, sequence_index
from core.segmentation.release import release as release_segmentation
from core.segmentation.train import train as train_segmentation
from core.segmentation.train_frozen import train_frozen
from weights.release import command_line

torch.set_num_threads(1)

SKY, ROAD, CAR = (CAMVID_CLASSES.index(n) for n in ("Sky", "Road", "Car"))


@pytest.fixture(scope="module")
def tiny_camvid(tmp_path_factory):
    """A CamVid-shaped folder of 64x96 frames: train holds two sequences (0001TP, 0006R0), two frames each."""
    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)
    splits = {"train": ["0001TP_000010", "0001TP_000020", "0006R0_000010", "0006R0_000020"],
              "val": ["0016E5_000010", "0016E5_000020"]}
    for split, names in splits.items():
        (root / split).mkdir()
        (root / f"{split}annot").mkdir()
        for name in names:
            Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(root / split / f"{name}.png")
            label = np.full((64, 96), ROAD, np.uint8)
            label[:20] = SKY
            label[30:50, 20:60] = CAR
            Image.fromarray(label).save(root / f"{split}annot" / f"{name}.png")
    return root


def _linear_run(tmp_path, scores: dict[int, float], **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def train_epoch(epoch, clock):
        loss = model(torch.ones(1, 2)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach())}

    def evaluate(epoch):
        return training.Evaluation(score=scores[epoch], log={"score": scores[epoch]}, metrics={"score": scores[epoch]})

    return training.fit(model, optimizer, out=tmp_path, train_epoch=train_epoch, evaluate=evaluate,
                        args={"lr": 0.1}, **kwargs)


def _epochs(log) -> list[int]:
    return [json.loads(line)["epoch"] for line in log.read_text().splitlines()]


def test_fit_keeps_the_best_epoch_resumes_after_the_last_and_sums_time_over_resumes(tmp_path):
    scores = {0: 0.2, 1: 0.5, 2: 0.3, 3: 0.4, 4: 0.1}
    assert _linear_run(tmp_path, scores, epochs=2, resume=True) == {"best": 0.5}
    first = torch.load(tmp_path / "last.pt", weights_only=True)
    assert set(first) == {"model", "optimizer", "epoch", "best", "elapsed_s", "args"} and first["epoch"] == 1
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 1
    _linear_run(tmp_path, scores, epochs=4, resume=True)  # epochs 2 and 3 score lower: best.pt stays
    assert _epochs(tmp_path / "log.jsonl") == [0, 1, 2, 3]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == 1 and best["val"] == {"score": 0.5}
    second = torch.load(tmp_path / "last.pt", weights_only=True)
    assert second["epoch"] == 3 and second["elapsed_s"] >= first["elapsed_s"]
    # An hour already spent on earlier resumes: a 30-minute budget stops the run after one more epoch.
    second["elapsed_s"] = 3600.0
    torch.save(second, tmp_path / "last.pt")
    _linear_run(tmp_path, {**scores, 5: 0.9}, epochs=10, resume=True, time_limit=30)
    assert _epochs(tmp_path / "log.jsonl") == [0, 1, 2, 3, 4]
    # Without resume the run starts over.
    _linear_run(tmp_path, scores, epochs=1, resume=False)
    assert _epochs(tmp_path / "log.jsonl")[-1] == 0


def test_a_fixed_schedule_scores_only_after_its_last_epoch_and_releases_that_epoch(tmp_path):
    calls = []
    scores = {0: 0.9, 1: 0.8, 2: 0.1}

    def evaluate(epoch):
        calls.append(epoch)
        return training.Evaluation(score=scores[epoch], log={"score": scores[epoch]}, metrics={})

    def run(**kwargs):
        model = nn.Linear(2, 1)
        return training.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), out=tmp_path, epochs=3,
                            train_epoch=lambda epoch, clock: {}, evaluate=evaluate, args={}, resume=True,
                            fixed_schedule=True, **kwargs)

    run(time_limit=1e-9)  # a time limit pauses the run after its first epoch: nothing scored, nothing released yet
    assert calls == [] and not (tmp_path / "best.pt").exists()
    assert run() == {"best": 0.1}  # the last epoch is released even though it scores lowest
    assert calls == [2] and torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 2


def test_a_fixed_schedule_sets_the_learning_rate_by_steps_alone_and_excludes_a_holdout():
    assert training.lr_minutes(60.0, fixed_schedule=True) is None
    assert training.lr_minutes(60.0, fixed_schedule=False) == 60.0
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    # Step 5 of 10 after 59 of 60 minutes: by steps the rate is 0.5 ** 0.9, by time it would be nearly 0.
    training.set_budget_lr(optimizer, 1.0, 5, 10, 59 * 60, training.lr_minutes(60.0, fixed_schedule=True))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 ** 0.9)
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, models=("enet-camvid",), model_default="enet-camvid", epochs=1, batch_size=1,
                           lr=1e-3, weight_decay=0.0, threads=1)
    assert parser.parse_args(["--fixed-schedule"]).fixed_schedule
    with pytest.raises(SystemExit):
        parser.parse_args(["--fixed-schedule", "--holdout", "0006R0"])


def test_fit_resumes_a_checkpoint_written_before_the_loop_and_refuses_one_that_does_not_fit(tmp_path):
    _linear_run(tmp_path, {0: 0.2}, epochs=1, resume=True)
    old = torch.load(tmp_path / "last.pt", weights_only=True)
    old["best_miou"] = old.pop("best")  # the segmentation trainers' key before core/training.py
    old["best_miou"] = 0.95
    torch.save(old, tmp_path / "last.pt")
    assert _linear_run(tmp_path, {1: 0.5}, epochs=2, resume=True) == {"best": 0.95}
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 0  # 0.5 < 0.95: no new best
    lost = torch.load(tmp_path / "last.pt", weights_only=True)
    del lost["model"]["bias"]
    torch.save(lost, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="does not fit the model"):
        _linear_run(tmp_path, {2: 0.5}, epochs=3, resume=True)


def test_command_line_parses_back_to_the_arguments_and_ends_with_resume():
    def add_arguments(p):
        p.add_argument("--model", required=True)
        p.add_argument("--crop", type=int, nargs=2, default=(240, 320))
        p.add_argument("--scale", type=float, default=2 / 3)
        p.add_argument("--lr", type=float, default=5e-4)
        p.add_argument("--resume", action="store_true")
        p.add_argument("--amp", action="store_true")
        p.add_argument("--init", default=None)

    args = {"model": "enet-camvid", "crop": [360, 480], "scale": 2 / 3, "lr": 0.0005, "amp": True, "init": None,
            "command": "train"}
    line = command_line("python -m core.segmentation train", add_arguments, args)
    assert line == ("python -m core.segmentation train --model enet-camvid --crop 360 480 --scale 0.6666666666666666 "
                    "--lr 0.0005 --amp --resume")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = vars(parser.parse_args(shlex.split(line)[4:]))  # after "python -m core.segmentation train"
    assert parsed == {"model": "enet-camvid", "crop": [360, 480], "scale": 2 / 3, "lr": 0.0005, "resume": True,
                      "amp": True, "init": None}


def test_a_sequence_is_held_out_by_its_frame_names(tiny_camvid):
    names = camvid_names(tiny_camvid, "train")
    assert sequence_index(names, "0006R0") == ([0, 1], [2, 3])
    with pytest.raises(ValueError, match="no frame of sequence"):
        sequence_index(names, "0016E5")


def _segmentation_args(data, out, **changes):
    args = dict(model="enet-camvid", data=str(data), out=str(out), epochs=1, batch_size=2, crop=(32, 48), scale=1.0,
                scale_range=(0.9, 1.1), lr=1e-3, weight_decay=0.0, threads=1, device="cpu", amp=False, resume=True,
                limit=None, time_limit=None, seed=0, init=None, holdout="0006R0", fixed_schedule=False,
                compile=False, aspect_range=(1.0, 1.0), street_augment=False)
    return SimpleNamespace(**{**args, **changes})


def test_enet_trainer_selects_on_a_held_out_sequence_resumes_an_old_run_and_releases(tiny_camvid, tmp_path, capsys):
    train_segmentation(_segmentation_args(tiny_camvid, tmp_path / "run"))
    assert "train 2 frames, selection 2 frames" in capsys.readouterr().out
    # The run in progress when the loop arrived: its last.pt says "best_miou" and names the model "enet".
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    last["best_miou"] = last.pop("best")
    last["args"]["model"] = "enet"
    torch.save(last, tmp_path / "run" / "last.pt")
    train_segmentation(_segmentation_args(tiny_camvid, tmp_path / "run", epochs=2))
    assert _epochs(tmp_path / "run" / "log.jsonl") == [0, 1]

    result = release_segmentation(tmp_path / "run" / "best.pt", "enet-camvid", tiny_camvid,
                                  weights_dir=tmp_path / "weights")
    card = (tmp_path / "weights" / "cards" / "enet-camvid.md").read_text()
    assert "the 2 train frames of sequence 0006R0 held out for model selection" in card
    assert "--holdout 0006R0" in card and "CamVid val (2 frames)" in card and 0 <= result["mIoU"] <= 1


def test_enet_trainer_on_a_fixed_schedule_scores_val_once_and_its_card_says_so(tiny_camvid, tmp_path, capsys):
    train_segmentation(_segmentation_args(tiny_camvid, tmp_path / "run", epochs=2, holdout=None, fixed_schedule=True))
    assert "no epoch chosen (fixed schedule)" in capsys.readouterr().out
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert ["selection_mIoU" in e for e in lines] == [False, True]
    release_segmentation(tmp_path / "run" / "best.pt", "enet-camvid", tiny_camvid, weights_dir=tmp_path / "weights")
    card = (tmp_path / "weights" / "cards" / "enet-camvid.md").read_text()
    assert "the last of a schedule of 2 epochs fixed in advance" in card and "chose nothing" in card
    assert "--fixed-schedule" in card and "--holdout" not in card and "polynomial decay over 2 epochs" in card


def test_maskrcnn_targets_follow_the_frame_to_its_encoded_size():
    """By hand: a car on rows 1-2, columns 2-3 of a 4x6 label map has the box (2, 1, 4, 3); at 6x9 (x1.5) it is
    (3, 1.5, 6, 4.5), and its mask (nearest: row r reads source row floor(r * 4/6), column c floor(c * 6/9)) covers
    rows 2-4 (source rows 1, 2, 2) and columns 3-5 (source columns 2, 2, 3): 9 pixels, 2.25 times the 4."""
    label = torch.full((4, 6), CAMVID_CLASSES.index("Road"), dtype=torch.uint8)
    label[1:3, 2:4] = CAR
    target = instances_from_labels(label, min_area=1)
    assert target["boxes"].tolist() == [[2.0, 1.0, 4.0, 3.0]]
    scaled = targets_at(target, (4, 6), (6, 9))
    assert scaled["boxes"].tolist() == [[3.0, 1.5, 6.0, 4.5]] and scaled["labels"].tolist() == target["labels"].tolist()
    assert scaled["masks"].shape == (1, 6, 9)
    assert torch.nonzero(scaled["masks"][0]).unique(dim=0).tolist() == [[r, c] for r in (2, 3, 4) for c in (3, 4, 5)]
    assert targets_at(target, (4, 6), (4, 6)) is target


def test_frozen_trainer_mirrors_selects_on_a_held_out_sequence_and_its_card_says_so(tiny_camvid, shared_weights,
                                                                                   tmp_path):
    args = SimpleNamespace(
        model="fcn8s-vgg19-camvid", data=str(tiny_camvid), weights_dir=str(shared_weights), out=str(tmp_path / "run"),
        cache=str(tmp_path / "cache"), size=(64, 96), epochs=1, batch_size=2, lr=1e-3, weight_decay=0.0, amp=False,
        threads=1, device="cpu", resume=True, time_limit=None, limit=None, seed=0, holdout="0006R0",
        fixed_schedule=False, mirror=True, tune_from=None, tune_lr_scale=0.1,
    )
    train_frozen(args)
    # FCN-8s's own cache: only the three pools it reads, for the frames and their mirror images; no val.
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["train-64x96-pool3.pool4.pool5.pt", "train_flip-64x96-pool3.pool4.pool5.pt"]
    train, flip = (torch.load(tmp_path / "cache" / name, weights_only=True) for name in names)
    assert [t.shape[1:] for t in train["taps"]] == [(256, 8, 12), (512, 4, 6), (512, 2, 3)]
    assert torch.equal(flip["labels"], train["labels"].flip(-1))
    # The mirror's maps are the encoder's on the mirrored frame, neither a copy nor a mirror of the frame's maps
    # (VGG's filters are not mirror-symmetric).
    pool5, pool5_flip = train["taps"][-1], flip["taps"][-1]
    assert not torch.equal(pool5, pool5_flip) and not torch.equal(pool5, pool5_flip.flip(-1))
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["args"]["holdout"] == "0006R0" and not any(k.startswith("encoder.") for k in best["model"])
    release_segmentation(tmp_path / "run" / "best.pt", "fcn8s-vgg19-camvid", tiny_camvid,
                         weights_dir=tmp_path / "weights", encoder_weights_dir=shared_weights)
    card = (tmp_path / "weights" / "cards" / "fcn8s-vgg19-camvid.md").read_text()
    assert "mirror images (each epoch each frame or its mirror" in card and "--mirror" in card
    assert "frames at 96x64 (480x360 scaled by 0.178), padded to 96x64" in card
    assert "**frozen** and not shipped (the record names it as an extra file); head" in card
    assert "then only the head was trained:" in card and "fine-tuned here" not in card


def _maskrcnn_args(data, weights_dir, out, **changes) -> SimpleNamespace:
    """The Mask R-CNN trainer's arguments for a one-epoch run on the tiny CamVid, holding out 0006R0."""
    return SimpleNamespace(**{
        "model": "maskrcnn-vgg19-camvid", "data": str(data), "weights_dir": str(weights_dir), "out": str(out),
        "epochs": 1, "batch_size": 2, "lr": 0.01, "warmup": 1, "weight_decay": 1e-4, "eval_every": 1, "threads": 2,
        "device": "cpu", "time_limit": None, "limit": None, "seed": 0, "holdout": "0006R0", "fixed_schedule": False,
        "sizes": [180], "eval_size": 180, "anchor_sizes": None, "aspect_ratios": None, **changes})


def test_maskrcnn_trainer_holds_out_a_sequence_resumes_and_releases(tiny_camvid, shared_weights, tmp_path):
    args = _maskrcnn_args(tiny_camvid, shared_weights, tmp_path / "run", sizes=[360, 180])
    train_instances(args)
    cache = torch.load(tmp_path / "run" / "features.pt", weights_only=True)
    # 64x96 frames are encoded at 360x540 and 180x270.
    assert set(cache) == {"train@360", "train_flip@360", "train@180", "train_flip@180"}
    assert cache["train@360"]["sizes"][0] == (360, 540) and cache["train_flip@180"]["sizes"][0] == (180, 270)
    assert cache["train@180"]["encoded"].shape[-2:] == (24, 36)  # 180x270 padded to 192x288 (32), at stride 8
    args.epochs = 2
    train_instances(args)  # a rerun continues
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [0, 1] and all("selection_mask_AP50_mean" in e for e in lines)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert not any(k.startswith("backbone.encoder.") for k in last["model"])

    result = release_instances(tmp_path / "run" / "best.pt", tiny_camvid, limit=1, weights_dir=tmp_path / "weights",
                               encoder_weights_dir=shared_weights)
    facts = json.loads((tmp_path / "weights" / "cards" / "maskrcnn-vgg19-camvid.json").read_text())
    assert facts["sha256"] == result["sha256"] and facts["metrics"]["epochs"] == facts["run"]["best_epoch"]
    assert facts["train_command"].startswith("python -m core.instances train --model maskrcnn-vgg19-camvid ")
    card = (tmp_path / "weights" / "cards" / "maskrcnn-vgg19-camvid.md").read_text()
    assert result["sha256"] in card and "held-out train sequence 0006R0" in card
    assert "at each short side of 360, 180 px" in card and "--sizes 360 180 --eval-size 180" in card
    # The released file, re-stored 8-bit without its checkpoint: smaller, the same run on its card, which names it.
    restored = release_instances(tmp_path / "weights" / "maskrcnn-vgg19-camvid.safetensors", tiny_camvid, limit=1,
                                 weights_dir=tmp_path / "w8", encoder_weights_dir=shared_weights, palette_bits=8)
    facts8 = json.loads((tmp_path / "w8" / "cards" / "maskrcnn-vgg19-camvid.json").read_text())
    assert restored["bytes"] < 0.6 * result["bytes"] and facts8["restored_from"] == result["sha256"]
    assert facts8["run"] == facts["run"] and facts8["train_command"] == facts["train_command"]
    card8 = (tmp_path / "w8" / "cards" / "maskrcnn-vgg19-camvid.md").read_text()
    assert "8-bit palettised (256 fp16 values per output channel" in card8 and "--palette-bits 8" in card8
    assert f"the file released as sha256 `{result['sha256']}`" in card8


def test_maskrcnn_trainer_tries_other_anchors_but_only_the_detectors_own_are_released(tiny_camvid, shared_weights,
                                                                                      tmp_path):
    train_instances(_maskrcnn_args(tiny_camvid, shared_weights, tmp_path / "run",
                                   anchor_sizes=[16, 32, 64, 128, 256, 512], aspect_ratios=[0.5, 1, 2, 3]))
    heads = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    # Six sizes x four aspect ratios: the RPN scores 24 anchors per cell (the detector's own 5 x 3 give 15).
    assert heads["model"]["rpn.head.cls_logits.weight"].shape[0] == 24
    with pytest.raises(SystemExit, match=r"anchor_sizes': \(16, 32, 64, 128, 256, 512\), 'aspect_ratios': \(0.5, 1"):
        release_instances(tmp_path / "run" / "best.pt", tiny_camvid, limit=1, weights_dir=tmp_path / "weights",
                          encoder_weights_dir=shared_weights)
    assert not (tmp_path / "weights").exists()
