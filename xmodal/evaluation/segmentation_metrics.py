"""Semantic-segmentation metrics from one accumulated confusion matrix.

Scores are summed over the whole split before any ratio is taken (dataset-level IoU, as in
the NYUv2 / Pascal VOC benchmarks), never averaged per image: per-image means overweight
small images and classes that are absent from most of them.

Label convention (NYUv2): ``0`` means unlabeled and is ignored; classes are ``1..C``.

mIoU convention: the mean of per-class IoU over the classes whose union (target or
prediction) is non-empty. A class absent from the target but predicted somewhere therefore
counts with IoU 0 (false positives are penalised); a class absent from both is left out.
This is the usual practice (mmsegmentation, torchmetrics' ``JaccardIndex`` ignoring NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor


class ConfusionMatrix:
    """Accumulates an int64 ``[C, C]`` confusion matrix (rows = true, cols = predicted).

    Args:
        num_classes: ``C``; predictions are in ``1..C``, targets in ``0..C`` (0 = unlabeled).
    """

    def __init__(self, num_classes: int) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Forget every batch added."""
        self.matrix.zero_()

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred [N, ...]`` in ``1..C``, ``target [N, ...]`` in ``0..C``.

        Pixels whose target is 0 are ignored whatever their prediction.
        """
        c = self.num_classes
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target shapes differ: {list(pred.shape)} vs {list(target.shape)}"
            )
        for name, t in (("pred", pred), ("target", target)):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise ValueError(f"{name} must hold integer class ids, got dtype {t.dtype}")
        pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
        if pred.numel() and (pred.min() < 1 or pred.max() > c):
            raise ValueError(
                f"pred values must be in 1..{c}, got range {int(pred.min())}..{int(pred.max())}"
            )
        if target.numel() and (target.min() < 0 or target.max() > c):
            raise ValueError(
                f"target values must be in 0..{c} (0 = unlabeled), got range "
                f"{int(target.min())}..{int(target.max())}"
            )
        labeled = target > 0
        index = (target[labeled] - 1) * c + (pred[labeled] - 1)
        self.matrix += torch.bincount(index, minlength=c * c).reshape(c, c)

    @property
    def total(self) -> int:
        """Number of labeled pixels seen."""
        return int(self.matrix.sum())

    def _checked(self) -> Tensor:
        if self.total == 0:
            raise ValueError("confusion matrix is empty: no labeled pixel (target > 0) was added")
        return self.matrix.double()

    @property
    def pixel_accuracy(self) -> float:
        """Fraction of labeled pixels predicted correctly."""
        m = self._checked()
        return float(m.trace() / m.sum())

    @property
    def per_class_iou(self) -> Tensor:
        """``[C]`` float64 IoU ``tp / (tp + fp + fn)``; index ``i`` is class ``i + 1``.

        NaN where the class is in neither target nor prediction.
        """
        m = self._checked()
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))

    @property
    def mean_iou(self) -> float:
        """Mean IoU over classes with a non-empty union (see the module docstring)."""
        return float(self.per_class_iou.nanmean())

    @property
    def mean_class_accuracy(self) -> float:
        """Mean per-class recall ``tp / (tp + fn)`` over classes present in the target."""
        m = self._checked()
        support = m.sum(1)
        present = support > 0
        return float((m.diagonal()[present] / support[present]).mean())
