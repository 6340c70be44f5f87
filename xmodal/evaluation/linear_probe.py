"""Linear probe: multinomial logistic regression on frozen features.

Features are standardised with training statistics; the L2 strength is chosen on a held-out
validation split from a grid, then the probe is refit on train + val with that strength and
scored once on test. Fit by full-batch L-BFGS in float64: the problem is convex, so the
result depends on the data and the strength only, not on seeds or learning rates. The grid
is walked from the strongest penalty down, each fit starting from the previous solution
(a regularisation path, as in glmnet), which only saves iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from xmodal.core.checks import at_least, each, non_negative, require
from xmodal.core.deprecation import former_names
from xmodal.core.registry import PROBES


@dataclass
class LinearProbeOptions:
    """Options of the linear probe.

    Attributes:
        l2_grid: candidate L2 strengths (on the mean loss), chosen by validation accuracy.
        max_iter: L-BFGS iterations per fit.
    """

    l2_grid: list[float] = field(default_factory=lambda: [1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    max_iter: int = 200

    def __post_init__(self) -> None:
        require(self, {"l2_grid": each(non_negative()), "max_iter": at_least(1)})


@dataclass
class ProbeResult:
    """Test metrics (fractions in [0, 1]) and the chosen L2 strength."""

    accuracy: float
    mean_class_accuracy: float
    val_accuracy: float
    l2: float


def fit_logistic(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    l2: float,
    max_iter: int = 200,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Weights ``[D, C]`` and bias ``[C]`` minimising mean cross-entropy + ``l2 * |W|^2``.

    L-BFGS starts from ``init`` (a nearby solution: fewer iterations, same optimum) or zeros.

    The gradient is written out (``x^T (softmax - onehot) / N + 2 l2 W``) rather than taken by
    autograd: two matrix products per evaluation instead of about six, with ``x^T`` laid out
    once.
    """
    x = x.double()
    xt = x.T.contiguous()
    onehot = torch.nn.functional.one_hot(y, num_classes).double()
    if init is None:
        init = (
            torch.zeros(x.shape[1], num_classes, dtype=torch.float64),
            torch.zeros(num_classes, dtype=torch.float64),
        )
    weight = init[0].detach().double().clone().requires_grad_(True)
    bias = init[1].detach().double().clone().requires_grad_(True)
    # tolerance_grad bounds the max abs gradient of the mean loss at the returned point
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    @torch.no_grad()
    def closure() -> Tensor:
        log_p = torch.log_softmax(x @ weight + bias, dim=1)
        residual = (log_p.exp() - onehot) / len(x)  # d(mean CE) / d(logits)
        weight.grad = xt @ residual + 2 * l2 * weight
        bias.grad = residual.sum(0)
        return -(log_p * onehot).sum() / len(x) + l2 * weight.pow(2).sum()

    opt.step(closure)  # type: ignore[no-untyped-call]  # torch's LBFGS.step is untyped
    return weight.detach(), bias.detach()


def accuracies(logits: Tensor, y: Tensor, num_classes: int) -> tuple[float, float]:
    """(accuracy, mean per-class accuracy over classes present in ``y``)."""
    pred = logits.argmax(1)
    correct = (pred == y).double()
    per_class = [correct[y == c].mean() for c in range(num_classes) if (y == c).any()]
    return float(correct.mean()), float(torch.stack(per_class).mean())


def require_finite(probe: str, splits: dict[str, Tensor]) -> None:
    """Raise ``ValueError`` naming the first of ``splits`` whose features hold NaN or inf."""
    for name, feats in splits.items():
        if not torch.isfinite(feats).all():
            raise ValueError(f"{probe}: {name} features contain NaN or inf")


def standardiser(reference: Tensor) -> Callable[[Tensor], Tensor]:
    """Function standardising features with ``reference``'s per-dimension mean and std."""
    mean, std = reference.double().mean(0), reference.double().std(0).clamp_min(1e-6)
    return lambda t: (t.double() - mean) / std


@PROBES.register("linear")
class LinearProbe:
    """Scene (image-level) classification from pooled features."""

    options = LinearProbeOptions
    #: the result rows: test metrics, and the val accuracy of the chosen L2 (probe fit on
    #: train alone), which is what a hyperparameter search may select on
    metrics = ("accuracy", "mean_class_accuracy", "val_accuracy")

    def __init__(self, config: LinearProbeOptions | None = None) -> None:
        self.config = config or LinearProbeOptions()

    def evaluate(
        self,
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor],
        test: tuple[Tensor, Tensor],
        num_classes: int,
    ) -> ProbeResult:
        """Each split is ``(features [N, D], labels [N])``."""
        (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
        require_finite("linear probe", {"train": xtr, "val": xva, "test": xte})
        norm = standardiser(xtr)
        xs, xv = norm(xtr), norm(xva)
        best_acc, best_l2, best_fit, previous = -1.0, self.config.l2_grid[0], None, None
        # strongest penalty first, each fit warm-started from the last: a regularisation path
        for l2 in sorted(self.config.l2_grid, reverse=True):
            previous = fit_logistic(xs, ytr, num_classes, l2, self.config.max_iter, previous)
            acc, _ = accuracies(xv @ previous[0] + previous[1], yva, num_classes)
            if acc > best_acc or (acc == best_acc and l2 < best_l2):  # ties: the weaker penalty
                best_acc, best_l2, best_fit = acc, l2, previous
        x_all, y_all = torch.cat([xtr, xva]), torch.cat([ytr, yva])
        norm = standardiser(x_all)
        w, b = fit_logistic(
            norm(x_all), y_all, num_classes, best_l2, self.config.max_iter, best_fit
        )
        acc, mca = accuracies(norm(xte) @ w + b, yte, num_classes)
        return ProbeResult(accuracy=acc, mean_class_accuracy=mca, val_accuracy=best_acc, l2=best_l2)


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"LinearProbeConfig": "LinearProbeOptions"}, globals())
