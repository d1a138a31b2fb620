"""The triplet loss, hard-triplet mining, and two small heads trained on frozen embeddings.

Loss(A, P, N) = max(d(A, P) - d(A, N) + mu, 0) with d the squared L2 distance.
Why mu > 0: with mu = 0 the all-zeros encoding f(x) = 0 gives d(A, P) = d(A, N) = 0 and
loss 0 for every triplet; the margin demands that negatives be at least mu farther than positives.

The lecture's alternative is a binary "same/different" head on |f(x1) - f(x2)| trained with
the logistic loss (:class:`SameDifferentHead`).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.faces.distances import pairwise_squared_l2, squared_l2

_threads_lock = threading.Lock()


@contextlib.contextmanager
def single_thread():
    """Run tiny CPU training (a 128 x 128 head on a few hundred rows) on one intra-op thread.

    Ops this small finish before a thread pool wakes up: on a busy 2-core machine the
    default pool made 120 steps take 13 s instead of 0.4 s. The setting is per process, so
    callers are serialised and the previous value restored.
    """
    with _threads_lock:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 0.2) -> torch.Tensor:
    """``max(||A - P||^2 - ||A - N||^2 + margin, 0)`` per triplet: ``N x D`` (x3) -> ``N``."""
    return (squared_l2(anchor, positive) - squared_l2(anchor, negative) + margin).clamp_min(0.0)


def label_ids(labels) -> torch.Tensor:
    """Names (or any hashables) -> ``N`` int64 ids."""
    if isinstance(labels, torch.Tensor):
        return labels.long()
    ids: dict = {}
    return torch.tensor([ids.setdefault(x, len(ids)) for x in labels], dtype=torch.long)


def hardest_for_anchor(embeddings: torch.Tensor, labels, anchor: int) -> tuple[int | None, int | None, torch.Tensor]:
    """For row ``anchor`` of ``G x D``: the hardest positive (same label, farthest) and the hardest
    negative (other label, nearest), as row numbers (None when there is none), and the ``G`` distances."""
    ids = label_ids(labels)
    d = pairwise_squared_l2(embeddings[anchor:anchor + 1], embeddings)[0]
    same = ids == ids[anchor]
    same[anchor] = False
    other = ids != ids[anchor]
    pos = int(torch.where(same, d, torch.full_like(d, -1.0)).argmax()) if same.any() else None
    neg = int(torch.where(other, d, torch.full_like(d, float("inf"))).argmin()) if other.any() else None
    return pos, neg, d


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Online hard mining (Hermans et al. 2017): each anchor with its farthest positive and nearest
    negative in the batch; the mean triplet loss over anchors that have both. ``B x D, B -> scalar``."""
    d = pairwise_squared_l2(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    hardest_pos = torch.where(pos_mask, d, torch.zeros_like(d)).max(1).values
    hardest_neg = torch.where(neg_mask, d, torch.full_like(d, float("inf"))).min(1).values
    losses = (hardest_pos - hardest_neg + margin).clamp_min(0.0)
    return losses[valid].mean() if valid.any() else d.sum() * 0.0


class ProjectionHead(nn.Module):
    """A linear map on frozen embeddings, output on the unit sphere: ``B x D -> B x out_dim``.

    Starts as the identity (D == out_dim), so "before training" is the backbone's own geometry.
    """

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        out_dim = out_dim or dim
        self.linear = nn.Linear(dim, out_dim, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(out_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x), dim=-1)


class SameDifferentHead(nn.Module):
    """The lecture's alternative: ``p(same) = sigmoid(w . |f(x1) - f(x2)| + b)``: ``B x D, B x D -> B`` logits."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        return self.linear((e1 - e2).abs()).squeeze(-1)


def all_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every unordered pair ``i < j``: index tensors ``P``, ``P`` and ``P`` booleans "same label"."""
    i, j = torch.triu_indices(len(labels), len(labels), offset=1)
    return i, j, labels[i] == labels[j]


@dataclass
class TrainingReport:
    losses: list[float] = field(default_factory=list)
    same_before: torch.Tensor | None = None  # squared distances of same-person pairs
    diff_before: torch.Tensor | None = None
    same_after: torch.Tensor | None = None
    diff_after: torch.Tensor | None = None
    accuracy: float = 0.0  # of the same/different head (when trained)


def _pair_distances(embeddings: torch.Tensor, labels: torch.Tensor):
    i, j, same = all_pairs(labels)
    d = squared_l2(embeddings[i], embeddings[j])
    return d[same], d[~same]


def train_projection(embeddings: torch.Tensor, labels, *, margin: float = 0.2, steps: int = 200, lr: float = 0.05,
                     batch_size: int = 64, seed: int = 0) -> tuple[ProjectionHead, TrainingReport]:
    """Learn :class:`ProjectionHead` on ``G x D`` frozen embeddings with the batch-hard triplet loss.

    Embeddings are L2-normalised first, so distances live in [0, 4] for any backend.
    Returns the head and the loss curve plus same/different pair distances before and after.
    """
    ids = label_ids(labels)
    x = F.normalize(embeddings.float(), dim=-1)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = ProjectionHead(x.shape[1])
    report = TrainingReport()
    with torch.no_grad():
        report.same_before, report.diff_before = _pair_distances(head(x), ids)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    with single_thread():
        for _ in range(steps):
            batch = torch.randperm(len(ids), generator=generator)[:batch_size]
            loss = batch_hard_triplet_loss(head(x[batch]), ids[batch], margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            report.losses.append(loss.item())
    head.eval()
    with torch.no_grad():
        report.same_after, report.diff_after = _pair_distances(head(x), ids)
    return head, report


def train_same_different(embeddings: torch.Tensor, labels, *, steps: int = 300, lr: float = 0.05,
                         seed: int = 0) -> tuple[SameDifferentHead, TrainingReport]:
    """Train :class:`SameDifferentHead` with the logistic loss on every pair (classes weighted to balance)."""
    ids = label_ids(labels)
    x = F.normalize(embeddings.float(), dim=-1)
    i, j, same = all_pairs(ids)
    target = same.float()
    n_same = target.sum().clamp_min(1)
    pos_weight = (len(target) - n_same) / n_same  # few same pairs among many different ones
    torch.manual_seed(seed)
    head = SameDifferentHead(x.shape[1])
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    report = TrainingReport()
    with single_thread():
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(head(x[i], x[j]), target, pos_weight=pos_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            report.losses.append(loss.item())
    with torch.no_grad():
        report.accuracy = float(((head(x[i], x[j]) > 0) == same).float().mean())
    return head, report
