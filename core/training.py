"""One training loop for every trainer, in the spirit of torchvision's reference scripts.

A trainer (:mod:`core.segmentation.train`, :mod:`core.segmentation.train_frozen`,
:mod:`core.instances.train`) builds its model, data and optimizer, and says how one epoch trains
and how the model is scored; :func:`fit` does what they all share: resume from ``last.pt``, a
time budget summed over resumes, ``log.jsonl`` (one JSON line per epoch) and ``best.pt`` /
``last.pt`` saved atomically, so a run killed at its time limit loses at most one epoch.

    last.pt  {"model", "optimizer", "epoch", "best", "elapsed_s", "args"}   what resuming needs
    best.pt  {"model", "epoch", "val", "args"}                               the best-scoring epoch

``args`` are the trainer's command-line arguments: the release rebuilds the training command
from them (:func:`weights.release.command_line`).

Three ways to choose the released epoch: the best on val (the default), the best on a training
sequence held out of training (``--holdout``), or none (``--fixed-schedule``, the papers'
protocol): the schedule is fixed in advance, the last epoch is released and val is scored once,
after it, so no number of the card was used to choose anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from core import runtime
from core.checkpoints import save_atomic


def add_arguments(p, *, models: tuple[str, ...], model_default: str | None, epochs: int, batch_size: int, lr: float,
                  weight_decay: float, threads: int, resume_flag: bool = True) -> None:
    """The options every trainer has, with that trainer's defaults; ``models`` are the registry names it trains."""
    p.add_argument("--model", choices=models, default=model_default, required=model_default is None,
                   help="the registered model to train")
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--out", default=None, help="checkpoint folder (default runs/<model>)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--weight-decay", type=float, default=weight_decay)
    p.add_argument("--threads", type=int, default=threads)
    runtime.add_arguments(p)  # --weights-dir, --device: as every entry point has them
    p.add_argument("--time-limit", type=float, default=None,
                   help="stop after the epoch that passes N minutes of training (summed over resumes)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N frames of each split (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    selection = p.add_mutually_exclusive_group()
    selection.add_argument("--holdout", default=None, metavar="SEQUENCE",
                           help="pick the epoch on this training sequence (file-name prefix, e.g. 0006R0), held out "
                                "of training, instead of val")
    selection.add_argument("--fixed-schedule", action="store_true",
                           help="pick no epoch: run all --epochs (the learning rate follows the steps alone; "
                                "--time-limit then only pauses the run), release the last one and score val once, "
                                "after it")
    if resume_flag:
        p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")


def start(args) -> torch.device:
    """The preamble every trainer shares: threads, seed, output folder (``runs/<model>`` by default), the settings
    of ``--weights-dir``/``--device`` and ``CVHUB_*`` (installed for the run); returns the device."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.out is None:
        args.out = f"runs/{args.model}"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return runtime.pick_device(runtime.use(runtime.Settings.from_args(args)).device)


def poly_lr(base: float, progress: float, power: float = 0.9) -> float:
    """Polynomial decay: ``base * (1 - progress) ** power`` for progress in [0, 1) (0 -> base, 0.5 -> ~0.54 base)."""
    return base * (1 - min(max(progress, 0.0), 0.99)) ** power


def lr_minutes(time_limit: float | None, fixed_schedule: bool) -> float | None:
    """The minutes that shape the learning rate: the time limit, except on a fixed schedule, where the rate follows
    the steps alone, so that the schedule is the same on any machine and a time limit only pauses the run."""
    return None if fixed_schedule else time_limit


def set_budget_lr(optimizer, base: float, step: int, total_steps: int, elapsed_s: float,
                  time_limit_min: float | None) -> None:
    """:func:`poly_lr` by whichever budget runs out first, steps or minutes.

    On a CPU the budget is time, not epochs: the learning rate reaches ~0 when the time limit stops the run.
    """
    progress = step / total_steps
    if time_limit_min:
        progress = max(progress, elapsed_s / (time_limit_min * 60))
    for group in optimizer.param_groups:  # lr_scale: a group that trains slower (a fine-tuned encoder)
        group["lr"] = poly_lr(base, progress) * group.get("lr_scale", 1.0)


@dataclass
class Evaluation:
    """One scoring of the model on the selection set."""

    score: float  # what best.pt is chosen on: higher is better
    log: dict  # numbers for this epoch's line of log.jsonl
    metrics: dict  # kept in best.pt beside the weights


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, *, out, epochs: int,
        train_epoch: Callable[[int, Callable[[], float]], dict], evaluate: Callable[[int], Evaluation | None],
        args: dict, resume: bool, time_limit: float | None = None,
        saved_state: Callable[[nn.Module], dict] | None = None, fixed_schedule: bool = False) -> dict:
    """Train ``model`` from the epoch after ``out/last.pt`` (when ``resume``) up to ``epochs``.

    ``train_epoch(epoch, clock)`` runs one epoch and returns numbers for the log (mean losses);
    ``clock()`` is the training time in seconds summed over resumes, for a schedule over a time
    budget. ``evaluate(epoch)`` scores the model, or returns None on an epoch without evaluation.
    ``saved_state(model)`` is what checkpoints keep (default: the whole state dict); a frozen part
    the trainer loads itself from elsewhere is left out of it. ``time_limit``: minutes summed over
    resumes; the run stops after the epoch that passes it. ``fixed_schedule``: ``evaluate`` runs after the last
    epoch only, so ``best.pt`` is that epoch. Returns {"best": the best score}.
    """
    out = Path(out)
    saved_state = saved_state or (lambda m: m.state_dict())
    last_path = out / "last.pt"
    start_epoch, best, elapsed_before = 0, float("-inf"), 0.0
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        _load_saved_state(model, ckpt["model"], set(saved_state(model)), last_path)
        optimizer.load_state_dict(ckpt["optimizer"])  # moves its state to the parameters' device
        # "best_miou": the key of the segmentation trainers' checkpoints before this loop (runs resume across it).
        best = ckpt["best"] if "best" in ckpt else ckpt["best_miou"]
        start_epoch, elapsed_before = ckpt["epoch"] + 1, float(ckpt.get("elapsed_s", 0.0))
        print(f"resumed from {last_path}: epoch {start_epoch}, best selection score {best:.4f}", flush=True)

    t_start = time.time()

    def clock() -> float:
        return elapsed_before + time.time() - t_start

    with open(out / "log.jsonl", "a") as log:
        for epoch in range(start_epoch, epochs):
            model.train()
            t0 = time.time()
            entry = {"epoch": epoch, **train_epoch(epoch, clock)}
            train_s = time.time() - t0
            evaluation = evaluate(epoch) if not fixed_schedule or epoch == epochs - 1 else None
            state = saved_state(model)
            if evaluation is not None:
                entry.update(evaluation.log)
                if evaluation.score > best:
                    best = evaluation.score
                    save_atomic({"model": state, "epoch": epoch, "val": evaluation.metrics, "args": args},
                                out / "best.pt")
            elapsed = clock()
            entry.update(train_s=round(train_s, 1), eval_s=round(time.time() - t0 - train_s, 1),
                         elapsed_s=round(elapsed, 1))
            print(json.dumps(entry), flush=True)
            log.write(json.dumps(entry) + "\n")
            log.flush()
            save_atomic({"model": state, "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best,
                         "elapsed_s": elapsed, "args": args}, last_path)
            if time_limit and elapsed > time_limit * 60:
                print(f"time limit of {time_limit:g} min reached after epoch {epoch}", flush=True)
                break
    return {"best": best}


def _load_saved_state(model: nn.Module, state: dict, saved_keys: set[str], path: Path) -> None:
    """Load a checkpoint that holds the saved part of the model: every saved key must be there, nothing else."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    lost = saved_keys.intersection(missing)
    if unexpected or lost:
        raise ValueError(f"{path} does not fit the model: missing {sorted(lost)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
