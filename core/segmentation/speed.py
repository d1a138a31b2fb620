"""Milliseconds per frame, measured the same way by the panel's compare mode and by bench/segmentation.py."""

from __future__ import annotations

import time

import torch


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def ms_per_frame(fn, x: torch.Tensor, *, warmup: int = 1, repeats: int = 3) -> float:
    """Median wall time of ``fn(x)`` in ms divided by the batch size of ``x`` (Bx3xHxW).

    Warm-up calls absorb one-off costs (allocations, cuDNN autotuning, compilation); CUDA is
    synchronised around each call so the time is the GPU's, not the launch's.
    """
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for _ in range(warmup):
        fn(x)
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn(x)
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2] / x.shape[0]
