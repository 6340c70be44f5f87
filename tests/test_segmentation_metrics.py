"""Segmentation metrics against a plain per-class loop and a hand example.

The confusion matrix agrees with both, and bad inputs raise.
"""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.evaluation.segmentation_metrics import ConfusionMatrix


def _reference(pred, target, c):
    """Independent per-class loop over plain Python lists."""
    pairs = [
        (int(t), int(p))
        for p, t in zip(pred.flatten(), target.flatten(), strict=True)
        if int(t) != 0
    ]
    correct = sum(t == p for t, p in pairs)
    ious, recalls = [], []
    for k in range(1, c + 1):
        tp = sum(t == k and p == k for t, p in pairs)
        in_target = sum(t == k for t, _ in pairs)
        in_pred = sum(p == k for _, p in pairs)
        union = in_target + in_pred - tp
        ious.append(tp / union if union else math.nan)
        if in_target:
            recalls.append(tp / in_target)
    valid = [v for v in ious if not math.isnan(v)]
    return correct / len(pairs), ious, sum(valid) / len(valid), sum(recalls) / len(recalls)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_per_class_loop_with_ignored_pixels(seed):
    g = torch.Generator().manual_seed(seed)
    c = 6
    cm = ConfusionMatrix(c)
    preds, targets = [], []
    for _ in range(3):  # accumulate over several batches
        target = torch.randint(0, c + 1, (2, 7, 5), generator=g)
        target[target == 6] = 5  # class 6 never in target
        pred = torch.randint(1, c, (2, 7, 5), generator=g)  # class 6 never predicted either
        cm.update(pred, target)
        preds.append(pred)
        targets.append(target)
    pred, target = torch.cat(preds), torch.cat(targets)
    acc, ious, miou, mca = _reference(pred, target, c)
    assert (target == 0).any()
    assert cm.total == int((target > 0).sum())
    assert cm.pixel_accuracy == pytest.approx(acc)
    got = cm.per_class_iou
    assert math.isnan(got[5]) and math.isnan(ious[5])
    assert got[:5].tolist() == pytest.approx(ious[:5])
    assert cm.mean_iou == pytest.approx(miou)
    assert cm.mean_class_accuracy == pytest.approx(mca)


def test_hand_example():
    # target (0 = unlabeled)    pred
    #   1 1 2                   1 2 2
    #   0 3 3                   3 3 1
    target = torch.tensor([[[1, 1, 2], [0, 3, 3]]])
    pred = torch.tensor([[[1, 2, 2], [3, 3, 1]]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert cm.pixel_accuracy == pytest.approx(3 / 5)
    # class 1: tp 1, union 2 + 2 - 1 = 3; class 2: tp 1, union 1 + 2 - 1 = 2; class 3: 1 / 2
    assert cm.per_class_iou.tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 2])
    assert cm.mean_iou == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    assert cm.mean_class_accuracy == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)


def test_class_predicted_but_absent_from_target_counts_as_zero():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([1, 1, 2]), torch.tensor([1, 1, 1]))
    assert cm.per_class_iou[0] == pytest.approx(2 / 3)
    assert cm.per_class_iou[1] == 0 and math.isnan(cm.per_class_iou[2])
    assert cm.mean_iou == pytest.approx(1 / 3)
    assert cm.mean_class_accuracy == pytest.approx(2 / 3)  # recall over target classes only


def test_bad_inputs_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="pred values must be in 1..3"):
        cm.update(torch.tensor([0, 1]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="pred values must be in 1..3"):
        cm.update(torch.tensor([4, 1]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="target values must be in 0..3"):
        cm.update(torch.tensor([1, 1]), torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="target values must be in 0..3"):
        cm.update(torch.tensor([1, 1]), torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match="shapes differ"):
        cm.update(torch.tensor([1, 1]), torch.tensor([[1, 1]]))
    with pytest.raises(ValueError, match="integer"):
        cm.update(torch.tensor([1.0, 1.0]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_empty_matrix_raises_on_read():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([1, 2]), torch.tensor([0, 0]))  # all unlabeled
    for read in ("pixel_accuracy", "per_class_iou", "mean_iou", "mean_class_accuracy"):
        with pytest.raises(ValueError, match="empty"):
            getattr(cm, read)
