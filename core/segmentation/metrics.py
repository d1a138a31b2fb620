"""Segmentation metrics from one confusion matrix, as in the SegNet/ENet papers (void ignored).

With ``C[t, p]`` = pixels of true class t predicted as p:
- IoU_c = C[c,c] / (row_c + col_c - C[c,c])           (per class; mIoU = their mean, the "class IoU")
- class accuracy_c = C[c,c] / row_c                     ("class avg." = mean over classes)
- global accuracy = trace(C) / sum(C)
"""

from __future__ import annotations

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Integer tensors of the same shape (any) -> num_classes x num_classes int64 counts [true, predicted].

    Target pixels equal to ``ignore_index`` (or outside 0..num_classes-1) are not counted.
    """
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    index = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def scores(conf: torch.Tensor) -> dict:
    """Confusion matrix -> {"iou": [per class], "mIoU", "class_accuracy": [per class], "class_avg", "global_accuracy"}.

    Classes absent from both truth and prediction have IoU nan and are left out of the means.
    """
    conf = conf.double()
    tp = conf.diag()
    rows, cols = conf.sum(1), conf.sum(0)
    iou = tp / (rows + cols - tp)
    acc = tp / rows
    return {
        "iou": iou.tolist(),
        "mIoU": float(iou.nanmean()),
        "class_accuracy": acc.tolist(),
        "class_avg": float(acc.nanmean()),
        "global_accuracy": float(tp.sum() / conf.sum()),
    }
