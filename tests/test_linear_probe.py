"""Linear probe: separable data is solved, chance data is not, L2 is chosen on validation."""

from __future__ import annotations

import pytest
import torch

from xmodal.evaluation.linear_probe import LinearProbe, LinearProbeOptions, accuracies, fit_logistic


def _blobs(n, d, classes, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.arange(n) % classes
    return centers[y] + spread * torch.randn(n, d, generator=g), y


def test_separable_blobs_are_solved():
    probe = LinearProbe(LinearProbeOptions(l2_grid=[1e-4, 1e-2]))
    result = probe.evaluate(
        _blobs(300, 16, 5, 0.3, 0),
        _blobs(100, 16, 5, 0.3, 1),
        _blobs(200, 16, 5, 0.3, 2),
        num_classes=5,
    )
    assert result.accuracy == 1.0 and result.mean_class_accuracy == 1.0
    assert result.l2 in (1e-4, 1e-2)


def test_random_labels_stay_near_chance():
    g = torch.Generator().manual_seed(0)
    split = lambda n: (torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g))  # noqa: E731
    result = LinearProbe().evaluate(split(400), split(200), split(1000), num_classes=4)
    assert 0.15 < result.accuracy < 0.36


def test_logistic_matches_closed_form_optimality():
    x, y = _blobs(200, 4, 3, 1.5, 0)
    l2 = 1e-2
    w, b = fit_logistic(x, y, 3, l2)
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x.double() @ w + b, y) + l2 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, [w, b])
    assert gw.abs().max() < 1e-5 and gb.abs().max() < 1e-5  # stationary point of a convex loss


def test_mean_class_accuracy_weights_classes_equally():
    logits = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    y = torch.tensor([0, 0, 0, 0]).long()
    y[3] = 1
    logits[3] = torch.tensor([1.0, 0])  # class 1 wrong, class 0 all right
    acc, mca = accuracies(logits, y, 2)
    assert acc == pytest.approx(0.75) and mca == pytest.approx(0.5)


def test_nan_features_are_rejected():
    x, y = _blobs(20, 4, 2, 0.1, 0)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="val features contain NaN"):
        LinearProbe().evaluate((x, y), (bad, y), (x, y), num_classes=2)
