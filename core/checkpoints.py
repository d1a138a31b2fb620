"""Checkpoints that survive a kill: the trainers run for hours on a CPU and are stopped by time limits."""

from __future__ import annotations

from pathlib import Path

import torch


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary file: a kill mid-save never leaves a broken checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
