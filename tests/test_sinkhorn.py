"""Log-domain Sinkhorn: marginals, agreement with a plain float64 reference, stability, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from xmodal.objectives.sinkhorn import TransportOptions, TransportResult, sinkhorn_log


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _opts(cost: torch.Tensor, eps: float, iters: int = 100, tol: float = 1e-6) -> TransportOptions:
    """Options stopping at an absolute marginal error ``tol`` (the solver's is per point)."""
    return TransportOptions(
        sinkhorn_eps=eps, sinkhorn_iters=iters, sinkhorn_tol=tol * max(cost.shape[-2:])
    )


def _random_marginal(n: int, g: torch.Generator) -> torch.Tensor:
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1  # uneven but positive
    return w / w.sum()


def _plain_sinkhorn(
    cost: np.ndarray, eps: float, a: np.ndarray, b: np.ndarray, iters: int
) -> np.ndarray:
    """Textbook scaling form, float64: K = exp(-C/eps), u = a / K v, v = b / K^T u."""
    kernel = np.exp(-cost / eps)
    u = np.ones_like(a)
    v = np.ones_like(b)
    for _ in range(iters):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
    return u[:, None] * kernel * v[None, :]


@pytest.mark.parametrize("uneven", [False, True])
def test_marginals_match(uneven: bool) -> None:
    g = _gen(0)
    cost = torch.rand(12, 9, generator=g) * 2
    a = _random_marginal(12, g) if uneven else None
    b = _random_marginal(9, g) if uneven else None
    res = sinkhorn_log(cost, _opts(cost, 0.05, iters=2000, tol=1e-6), a=a, b=b)
    assert isinstance(res, TransportResult)
    assert res.plan.shape == (12, 9) and res.plan.dtype == torch.float32
    want_a = a.float() if uneven else torch.full((12,), 1 / 12)
    want_b = b.float() if uneven else torch.full((9,), 1 / 9)
    assert res.marginal_error < 1e-6
    torch.testing.assert_close(res.plan.sum(1), want_a, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.plan.sum(0), want_b, atol=1e-6, rtol=0)
    assert (res.plan >= 0).all()
    torch.testing.assert_close(res.cost, (res.plan * cost).sum())


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_matches_plain_float64_reference(eps: float) -> None:
    g = _gen(1)
    cost = torch.rand(10, 7, generator=g, dtype=torch.float64)
    a, b = _random_marginal(10, g), _random_marginal(7, g)
    ref = _plain_sinkhorn(cost.numpy(), eps, a.numpy(), b.numpy(), iters=3000)
    res = sinkhorn_log(cost, _opts(cost, eps, iters=3000, tol=1e-7), a=a, b=b)
    np.testing.assert_allclose(res.plan.double().numpy(), ref, atol=2e-6, rtol=1e-4)


def test_small_eps_is_finite() -> None:
    g = _gen(2)
    cost = torch.rand(3, 16, 16, generator=g) * 2  # exponents down to -2000 at eps=1e-3
    res = sinkhorn_log(cost, _opts(cost, 1e-3, iters=300, tol=1e-6))
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.cost).all()
    assert np.isfinite(res.marginal_error)
    torch.testing.assert_close(res.plan.sum((-2, -1)), torch.ones(3), atol=1e-3, rtol=0)


def test_batched_equals_per_item() -> None:
    g = _gen(3)
    cost = torch.rand(2, 3, 8, 6, generator=g) * 2
    # tol=0 runs every problem for exactly max_iters, so batching cannot change the stop point.
    batched = sinkhorn_log(cost, _opts(cost, 0.05, iters=150, tol=0.0))
    assert batched.plan.shape == (2, 3, 8, 6) and batched.cost.shape == (2, 3)
    assert batched.iterations == 150
    for i in range(2):
        for j in range(3):
            single = sinkhorn_log(cost[i, j], _opts(cost, 0.05, iters=150, tol=0.0))
            torch.testing.assert_close(batched.plan[i, j], single.plan, atol=1e-7, rtol=1e-5)
            torch.testing.assert_close(batched.cost[i, j], single.cost, atol=1e-6, rtol=1e-5)


def test_batched_marginals_per_problem() -> None:
    g = _gen(4)
    cost = torch.rand(4, 5, 6, generator=g)
    a = torch.stack([_random_marginal(5, g) for _ in range(4)])  # [4, 5]: one marginal per problem
    res = sinkhorn_log(cost, _opts(cost, 0.1, iters=1000, tol=1e-6), a=a)
    torch.testing.assert_close(res.plan.sum(-1), a.float(), atol=1e-6, rtol=0)


def test_float32_under_bf16_autocast_and_no_grad() -> None:
    g = _gen(5)
    cost = (torch.rand(8, 8, generator=g) * 2).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = sinkhorn_log(cost.bfloat16(), _opts(cost, 0.05))
    assert res.plan.dtype == torch.float32 and res.cost.dtype == torch.float32
    assert not res.plan.requires_grad
    ref = sinkhorn_log(cost.detach().bfloat16().float(), _opts(cost, 0.05))
    torch.testing.assert_close(res.plan, ref.plan)


def test_early_stop() -> None:
    cost = torch.rand(10, 10, generator=_gen(6))
    res = sinkhorn_log(cost, _opts(cost, 0.5, iters=1000, tol=1e-5))
    assert res.iterations < 1000
    assert res.marginal_error < 1e-5
    capped = sinkhorn_log(cost, _opts(cost, 0.01, iters=3, tol=1e-12))
    assert capped.iterations == 3 and capped.marginal_error > 1e-12


def test_small_eps_approaches_exact_ot() -> None:
    n = 8
    cost = torch.rand(n, n, generator=_gen(7), dtype=torch.float64) * 2
    rows, cols = linear_sum_assignment(cost.numpy())
    exact = cost.numpy()[rows, cols].sum() / n  # optimal plan is a permutation scaled by 1/n
    gaps = []
    for eps in (0.1, 0.03, 0.003):
        res = sinkhorn_log(cost, _opts(cost, eps, iters=5000, tol=1e-7))
        gaps.append(float(res.cost) - exact)
    assert all(gap > -1e-4 for gap in gaps)  # no feasible plan beats the exact optimum
    assert gaps[0] > gaps[-1]
    assert gaps[-1] < 5e-3


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sinkhorn_eps=0.0),
        dict(sinkhorn_eps=-1.0),
        dict(sinkhorn_eps=float("inf")),
        dict(sinkhorn_iters=0),
        dict(sinkhorn_tol=-1e-9),
        dict(ipot_beta=0.0),
        dict(local_solver="emd"),
    ],
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TransportOptions(**kwargs)


def test_option_boundaries() -> None:
    """``sinkhorn_tol = 0`` is allowed (it runs every iteration); ``sinkhorn_iters = 1`` too."""
    cost = torch.rand(4, 4, generator=_gen(8))
    res = sinkhorn_log(cost, TransportOptions(sinkhorn_tol=0.0, sinkhorn_iters=7))
    assert res.iterations == 7 and not res.converged
    assert sinkhorn_log(cost, TransportOptions(sinkhorn_iters=1)).iterations == 1


def test_bad_marginal() -> None:
    with pytest.raises(ValueError, match="a must have shape"):
        sinkhorn_log(torch.rand(4, 4), TransportOptions(), a=torch.full((3,), 1 / 3))


def test_tolerance_is_relative_to_the_mass_per_point() -> None:
    """``sinkhorn_tol`` is in units of ``1 / max(n, m)``: the stop is the same at any size."""
    cost = torch.rand(40, 40, generator=_gen(9))
    res = sinkhorn_log(cost, TransportOptions(sinkhorn_eps=0.5, sinkhorn_tol=1e-2))
    assert res.converged and res.relative_marginal_error < 1e-2
    assert res.marginal_error < 1e-2 / 40


def test_converged_flag_and_relative_error() -> None:
    """Small eps, uneven marginals, 100 iterations: Sinkhorn stops far off and says so.

    A generous budget converges.
    """
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(32, 32, generator=g) * 2
    a = torch.softmax(torch.randn(32, generator=g) * 2, 0)
    stuck = sinkhorn_log(cost, _opts(cost, 1e-3, iters=100, tol=1e-6), a=a)
    assert not stuck.converged and stuck.marginal_error > 1e-3
    assert stuck.relative_marginal_error == pytest.approx(stuck.marginal_error * 32)
    done = sinkhorn_log(cost, _opts(cost, 0.1, iters=2000, tol=1e-6))
    assert done.converged and done.marginal_error < 1e-6
    assert not sinkhorn_log(
        cost, _opts(cost, 0.1, iters=50, tol=0.0)
    ).converged  # tol=0 never claims it
