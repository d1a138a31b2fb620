"""Release a trained model, whatever its task: the weight file, its model card, and the facts the record reads.

    <weights_dir>/<name>.safetensors     fp16, or palettised (weights/palette.py) for decoders too big in fp16
    <weights_dir>/cards/<name>.md        the model card: data, recipe, commands, metrics
    <weights_dir>/cards/<name>.json      the facts: sha256, metrics, recipe, training and release commands

The record of ``name`` (``weights/records/<task>.py``) reads its sha256 and metrics from the JSON
through :func:`released`, as torchvision's ``Weights.meta`` carries the metrics beside the weights:
a release writes data, never Python source. The task's release command
(``python -m core.segmentation release``, ``python -m core.instances release``) says how its
model is scored and what its card says; :func:`release` does the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file
from torch import nn

from weights.delta import SUFFIX, as_deltas
from weights.palette import palettize
from weights.registry import create, get_record, load_safetensors, load_state
from weights.resolve import resolve_extra

#: Where the project's own weights, cards and facts live (a release may write elsewhere, e.g. in a test).
WEIGHTS_DIR = Path(__file__).resolve().parent


def _facts(name: str) -> dict | None:
    """``weights/cards/<name>.json``, the facts its release wrote (None before a release)."""
    path = WEIGHTS_DIR / "cards" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def released(name: str) -> dict:
    """What the record of ``name`` takes from its release: ``sha256``, ``metrics`` and ``card``, read from
    ``weights/cards/<name>.json``; a model not released yet has none of them."""
    facts = _facts(name)
    if facts is None:
        return {"sha256": None, "metrics": {}, "card": None}
    return {"sha256": facts["sha256"], "metrics": facts["metrics"], "card": f"{name}.md"}


def quality_check(name: str) -> dict | None:
    """The score of ``name``'s shipped file on a small fixed set of real frames, recorded at release, which the
    tests measure again: ``{"frames": N, "split": ..., <metric>: value}`` (None before a release)."""
    facts = _facts(name)
    return facts.get("quality_check") if facts else None


def _fits_fp16(v: torch.Tensor) -> bool:
    """Float tensors go fp16 unless a value would overflow it: a BN right after the frozen encoder's raw
    activations keeps running variances in the millions, which fp16 (max 65504) would turn into inf."""
    return v.is_floating_point() and bool(v.abs().max() <= torch.finfo(torch.float16).max)


def read_checkpoint(checkpoint) -> dict:
    """A ``best.pt`` of :func:`core.training.fit`, or a weight file a release wrote (``<name>.safetensors``, its facts
    in ``cards/<name>.json`` beside it, as in ``weights/``): storing a released model another way (8-bit, say)
    needs no checkpoint. The file's tensors are what its model loads (an older release: ``git show``); its facts
    give the epoch, the selection scores, the recipe and the run, and ``restored_from`` its sha256."""
    path = Path(checkpoint)
    if path.suffix != ".safetensors":
        return torch.load(path, map_location="cpu", weights_only=True)
    facts = json.loads((path.parent / "cards" / f"{path.stem}.json").read_text())
    state = load_safetensors(path)
    if any(k.endswith(SUFFIX) for k in state):
        raise SystemExit(f"{path} stores tensors as changes from pretrained weights: re-store its checkpoint instead")
    return {"model": state, "epoch": facts["metrics"]["epochs"] - 1, "val": facts["checkpoint_val"],
            "args": facts["recipe"], "run": facts["run"], "restored_from": facts["sha256"]}


def export_weights(checkpoint, out, palette_bits: int = 0, delta_base: dict | None = None,
                   delta_bits: int = 0) -> dict:
    """best.pt (or a released file: :func:`read_checkpoint`) -> fp16 safetensors (BN statistics and PReLU slopes
    included), or with ``palette_bits`` 4 or 8 the large weights palettised (:mod:`weights.palette`) and the rest
    fp16. ``delta_base``: pretrained tensors the model fine-tuned; those are stored as their change from them
    (:mod:`weights.delta`), palettised at ``delta_bits`` (0: fp16). Returns the file's sha256 and size, and the
    checkpoint's epoch, selection metrics and training arguments."""
    ckpt = read_checkpoint(checkpoint)
    state = {k: v for k, v in ckpt["model"].items() if not k.endswith("num_batches_tracked")}
    changes = {}
    if delta_base is not None:
        state = as_deltas(state, delta_base)
        changes = {k: state.pop(k) for k in [k for k in state if k.endswith(SUFFIX)]}
        if delta_bits:
            changes = palettize(changes, delta_bits)
    if palette_bits:
        state = palettize(state, palette_bits)
    state.update(changes)
    state = {k: (v.half() if _fits_fp16(v) else v).contiguous() for k, v in state.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    return {"out": str(out), "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "bytes": out.stat().st_size,
            "palette_bits": palette_bits, "delta_bits": delta_bits if delta_base is not None else None,
            "epoch": ckpt.get("epoch"), "val": ckpt.get("val", {}), "args": ckpt.get("args") or {},
            "run": ckpt.get("run"), "restored_from": ckpt.get("restored_from")}


def add_palette_argument(p) -> None:
    """``--palette-bits``, the storage option of every release command (and of segmentation's ``export``)."""
    p.add_argument("--palette-bits", type=int, choices=(0, 4, 8), default=0,
                   help="0: fp16; 4 or 8: palettise the large weights (weights/palette.py), for files too big for "
                        "the repository in fp16")


def storage_text(bits: int, short: bool = False, delta_bits: int | None = None) -> str:
    """How a released file stores its weights, for its card (``delta_bits``: fine-tuned layers stored as changes,
    :mod:`weights.delta`, palettised at that many bits, 0 for fp16; None: no such layers)."""
    if not bits:
        text = "fp16" if short else "fp16 safetensors"
    elif short:
        text = f"{bits}-bit palettised"
    else:
        text = (f"safetensors with every large weight {bits}-bit palettised ({2 ** bits} fp16 values per output "
                "channel, 1-D k-means; `weights/palette.py`) and the rest fp16 (fp32 where a value exceeds fp16's "
                "range)")
    if delta_bits is not None:
        as_stored = f"{delta_bits}-bit palettised" if delta_bits else "fp16"
        text += (f", fine-tuned layers as {as_stored} changes from ImageNet's" if short else
                 f"; the fine-tuned encoder layers are stored as their change from the ImageNet weights, {as_stored} "
                 "(`weights/delta.py`), which loading adds back")
    return text


def restored_line(facts: dict) -> list[str]:
    """The card's line for a file re-stored from an earlier release (:func:`read_checkpoint`), else none."""
    if not facts.get("restored_from"):
        return []
    return [f"- **Re-stored**: these weights are those of the file released as sha256 `{facts['restored_from']}` "
            "(the same training run, its recipe and run below), stored as this file says and scored again; the "
            "release command reads that file and its facts from a folder laid out like `weights/` (from the commit "
            "that shipped it: `git show`)."]


def command_line(prog: str, add_arguments: Callable, args: dict) -> str:
    """The command that parses to ``args``: ``prog``, then every option of the parser ``add_arguments`` builds that
    has a value in ``args`` (a switch when on), in the parser's order. A ``--resume`` switch comes last and always:
    the same command starts a run and continues it after a time limit."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    parts, resume = [prog], []
    for action in parser._actions:  # argparse has no public list of a parser's options
        if action.dest == "resume":
            resume = [action.option_strings[0]]
            continue
        value = args.get(action.dest)
        if value is None or value is False:
            continue
        flag = action.option_strings[0]
        if action.nargs == 0:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.append(" ".join([flag, *map(_format, value)]))
        else:
            parts.append(f"{flag} {_format(value)}")
    return " ".join(parts + resume)


def _format(value) -> str:
    """A value as typed: 0.0005, 120, 1; a float that %g would round keeps every digit."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def run_summary(checkpoint, epoch: int) -> dict:
    """The run that made ``checkpoint`` (its best ``epoch``, 0-based): best epoch (1-based), and from ``last.pt``
    beside it the epochs run and the minutes of training, summed over resumes."""
    run = {"best_epoch": epoch + 1}
    last = Path(checkpoint).with_name("last.pt")
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        run.update(epochs_run=ckpt["epoch"] + 1, minutes=round(float(ckpt.get("elapsed_s", 0.0)) / 60, 1))
    return run


def release(name: str, checkpoint, *, trainer: tuple[str, Callable], release_command: str,
            score: Callable[[nn.Module], tuple[dict, dict]], card: Callable[[dict, dict], str],
            weights_dir=None, palette_bits: int = 0, operator_weights_dir=None,
            delta_base: Callable[[list], dict] | None = None, delta_bits: int = 0) -> dict:
    """Ship ``checkpoint`` (a ``best.pt`` of :func:`core.training.fit`, or a released file: :func:`read_checkpoint`)
    as the registered model ``name``.

    Exports it to the record's file in ``weights_dir`` (default the project's ``weights/``), loads that file
    into the record's architecture as the app will, and scores it: ``score(model) -> (metrics, details)``,
    the metrics for the record, the details for the card (a ``details["quality_check"]``, the score on a small
    fixed set that a test re-measures, is kept in the facts). Then writes ``cards/<name>.md``
    (``card(facts, details)``) and ``cards/<name>.json`` (the facts). ``trainer``: the training command's
    program and its ``add_arguments``, to rebuild the command from the checkpoint's saved arguments.
    ``operator_weights_dir``: where the record's extra files are (a frozen encoder's ImageNet weights), as the
    app's ``--weights-dir``. ``delta_base(extras)``: the pretrained tensors that fine-tuned ones are stored as changes
    from (:mod:`weights.delta`), from the record's extra files, palettised at ``delta_bits``. Returns the facts.
    """
    record = get_record(name)
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    extras = [resolve_extra(record, i, weights_dir=operator_weights_dir) for i in range(len(record.extra_files))]
    exported = export_weights(checkpoint, weights_dir / record.source.filename, palette_bits,
                              delta_base(extras) if delta_base else None, delta_bits)
    model = create(name, pretrained=False)
    model.load_state_dict(load_state(record, exported["out"], extras), strict=True)
    metrics, details = score(model)
    metrics["epochs"] = exported["epoch"] + 1  # the best epoch, 1-based: every record's metrics say it
    recipe = {**exported["args"], "model": name}  # a run may predate the registry name as its --model
    recipe.pop("command", None)  # the CLI's subcommand, not a training option
    prog, add_arguments = trainer
    facts = {
        "name": name,
        "file": record.source.filename,
        "bytes": exported["bytes"],
        "palette_bits": palette_bits,
        "delta_bits": exported["delta_bits"],
        "sha256": exported["sha256"],
        "metrics": metrics,
        "checkpoint_val": {k: v for k, v in exported["val"].items() if k != "confusion"},
        "run": exported["run"] or run_summary(checkpoint, exported["epoch"]),
        "recipe": recipe,
        "train_command": command_line(prog, add_arguments, recipe),
        "release_command": release_command,
    }
    if exported["restored_from"]:
        facts["restored_from"] = exported["restored_from"]
    if "quality_check" in details:
        facts["quality_check"] = details["quality_check"]
    facts = json.loads(json.dumps(facts, default=str))  # what the record will read back: tuples become lists
    cards = weights_dir / "cards"
    cards.mkdir(parents=True, exist_ok=True)
    (cards / f"{name}.md").write_text(card(facts, details))
    (cards / f"{name}.json").write_text(json.dumps(facts, indent=1) + "\n")
    return facts
