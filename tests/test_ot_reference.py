"""Optimal transport solvers checked against POT (``import ot``) as the reference.

* ``sinkhorn_log`` converged plans equal POT's ``ot.sinkhorn(..., method="sinkhorn_log")`` in
  float64 (square, non-square, batched item by item, uneven marginals), and equal a float64
  log-domain iteration at the same iteration count (the fast scaling blocks must not change the
  iteration); finite and marginal-correct at eps = 1e-3.
* ``ipot`` approaches ``ot.emd2`` as iterations grow; float32 under bf16 autocast; batched.
* Both reject bad inputs with a ValueError that names the argument; their settings come in one
  ``TransportOptions``, which checks each range.

POT-dependent tests skip when POT is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.objectives.ipot import ipot
from xmodal.objectives.sinkhorn import TransportOptions, TransportResult, sinkhorn_log
from xmodal.objectives.transport import TRANSPORT_METHODS, solve_transport


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _opts(
    cost: torch.Tensor,
    eps: float = 0.05,
    iters: int = 100,
    tol: float = 1e-6,
    beta: float = 1.0,
    solver: str = "sinkhorn",
) -> TransportOptions:
    """Options stopping at an absolute marginal error ``tol`` (the solvers' is per point)."""
    return TransportOptions(
        sinkhorn_eps=eps,
        sinkhorn_iters=iters,
        sinkhorn_tol=tol * max(cost.shape[-2:]),
        ipot_beta=beta,
        local_solver=solver,  # type: ignore[arg-type]
    )


def _marginal(*shape: int, g: torch.Generator) -> torch.Tensor:
    """Uneven positive marginal(s), float64, summing to 1 over the last dim."""
    w = torch.rand(*shape, generator=g, dtype=torch.float64) + 0.05
    return w / w.sum(-1, keepdim=True)


def _problem(n: int, m: int, seed: int, batch: tuple[int, ...] = ()):
    g = _gen(seed)
    cost = torch.rand(*batch, n, m, generator=g, dtype=torch.float64) * 2  # costs in [0, 2]
    return cost, _marginal(*batch, n, g=g), _marginal(*batch, m, g=g)


def _pot_plan(ot, cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float) -> np.ndarray:
    return ot.sinkhorn(
        a.numpy(),
        b.numpy(),
        cost.numpy(),
        reg=eps,
        method="sinkhorn_log",
        numItermax=20000,
        stopThr=1e-9,
        warn=False,
    )


# --------------------------------------------------------------------------- Sinkhorn vs POT


@pytest.mark.parametrize("eps", [0.1, 0.05, 0.01])
@pytest.mark.parametrize("n, m", [(16, 16), (13, 7), (6, 11)])
def test_sinkhorn_matches_pot(eps: float, n: int, m: int) -> None:
    ot = pytest.importorskip("ot")
    cost, a, b = _problem(n, m, seed=n * 100 + m)
    ref = _pot_plan(ot, cost, a, b, eps)
    res = sinkhorn_log(cost, _opts(cost, eps=eps, iters=20000, tol=1e-6), a=a, b=b)
    assert res.plan.dtype == torch.float32 and res.plan.shape == (n, m)
    assert res.marginal_error < 1e-6
    np.testing.assert_allclose(res.plan.double().numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        float(res.cost), float((ref * cost.numpy()).sum()), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("eps", [0.1, 0.05, 0.01])
def test_sinkhorn_batched_matches_pot_item_by_item(eps: float) -> None:
    ot = pytest.importorskip("ot")
    cost, a, b = _problem(
        10, 7, seed=7, batch=(2, 3)
    )  # per-problem marginals [2, 3, 10] / [2, 3, 7]
    res = sinkhorn_log(cost, _opts(cost, eps=eps, iters=20000, tol=1e-6), a=a, b=b)
    assert res.plan.shape == (2, 3, 10, 7) and res.cost.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            ref = _pot_plan(ot, cost[i, j], a[i, j], b[i, j], eps)
            np.testing.assert_allclose(res.plan[i, j].double().numpy(), ref, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # POT's log(0)
def test_sinkhorn_zero_mass_entries_match_pot() -> None:
    ot = pytest.importorskip("ot")
    cost, a, b = _problem(9, 8, seed=11)
    a[2] = 0.0
    a = a / a.sum()
    b[5] = 0.0
    b = b / b.sum()
    res = sinkhorn_log(cost, _opts(cost, eps=0.05, iters=20000, tol=1e-6), a=a, b=b)
    assert (res.plan[2] == 0).all() and (res.plan[:, 5] == 0).all()
    np.testing.assert_allclose(
        res.plan.double().numpy(), _pot_plan(ot, cost, a, b, 0.05), atol=1e-5, rtol=0
    )


def _log_domain_f64(cost, eps, a, b, iters):
    """Reference iteration: float64 log domain, row update then column update."""
    neg = -cost / eps
    beta = torch.zeros(cost.shape[-1], dtype=torch.float64)
    for _ in range(iters):
        alpha = a.log() - torch.logsumexp(neg + beta, dim=-1)
        beta = b.log() - torch.logsumexp(neg + alpha[:, None], dim=-2)
    return torch.exp(neg + alpha[:, None] + beta)


@pytest.mark.parametrize("eps", [0.05, 0.01, 1e-3])
@pytest.mark.parametrize("iters", [1, 3, 10, 37])
def test_sinkhorn_same_iterate_as_log_domain(eps: float, iters: int) -> None:
    cost, a, b = _problem(30, 20, seed=3)
    res = sinkhorn_log(cost, _opts(cost, eps=eps, iters=iters, tol=0.0), a=a, b=b)
    assert res.iterations == iters
    ref = _log_domain_f64(cost, eps, a, b, iters)
    np.testing.assert_allclose(res.plan.double().numpy(), ref.numpy(), atol=1e-6, rtol=0)


def test_sinkhorn_small_eps_finite_and_marginal_correct() -> None:
    cost, a, b = _problem(24, 18, seed=5, batch=(2,))
    res = sinkhorn_log(cost, _opts(cost, eps=1e-3, iters=20000, tol=1e-5), a=a, b=b)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.cost).all()
    assert (res.plan >= 0).all()
    assert res.marginal_error < 1e-5
    torch.testing.assert_close(res.plan.sum(-1), a.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(res.plan.sum(-2), b.float(), atol=1e-5, rtol=0)
    ot = pytest.importorskip("ot")
    for i in range(2):  # eps = 1e-3 on costs in [0, 2] is close to exact OT
        exact = ot.emd2(a[i].numpy(), b[i].numpy(), cost[i].numpy())
        assert abs(float(res.cost[i]) - exact) < 5e-3


# --------------------------------------------------------------------------- IPOT


def test_ipot_approaches_exact_ot() -> None:
    ot = pytest.importorskip("ot")
    cost, a, b = _problem(20, 15, seed=21)
    exact = ot.emd2(a.numpy(), b.numpy(), cost.numpy())
    rel = {}
    for iters in (10, 100, 500):
        res = ipot(cost, _opts(cost, iters=iters, tol=0.0), a=a, b=b)
        assert res.iterations == iters and res.plan.dtype == torch.float32
        rel[iters] = abs(float(res.cost) - exact) / exact
    assert rel[500] < 1e-3
    assert rel[500] < 0.05 * rel[10] and rel[100] < rel[10]
    torch.testing.assert_close(res.plan.sum(-1), a.float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(res.plan.sum(-2), b.float(), atol=1e-5, rtol=0)
    assert res.marginal_error < 1e-4 and (res.plan >= 0).all()
    # The plan itself approaches the (unique, for random costs) optimal plan.
    np.testing.assert_allclose(
        res.plan.double().numpy(), ot.emd(a.numpy(), b.numpy(), cost.numpy()), atol=2e-3
    )


def test_ipot_small_beta_is_stable() -> None:
    cost, a, b = _problem(12, 10, seed=22)
    res = ipot(
        cost, _opts(cost, beta=0.01, iters=50, tol=0.0), a=a, b=b
    )  # C / beta up to 200, x50 steps
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.cost).all()
    torch.testing.assert_close(res.plan.sum(-2), b.float(), atol=1e-5, rtol=0)
    assert abs(float(res.plan.sum()) - 1.0) < 1e-3


def test_ipot_batched_equals_per_item_and_early_stop() -> None:
    cost, a, b = _problem(12, 9, seed=23, batch=(2, 2))
    batched = ipot(cost, _opts(cost, iters=60, tol=0.0), a=a, b=b)
    assert batched.plan.shape == (2, 2, 12, 9) and batched.iterations == 60
    for i in range(2):
        for j in range(2):
            single = ipot(cost[i, j], _opts(cost[i, j], iters=60, tol=0.0), a=a[i, j], b=b[i, j])
            torch.testing.assert_close(batched.plan[i, j], single.plan, atol=1e-7, rtol=1e-5)
    stopped = ipot(cost[0, 0], _opts(cost[0, 0], iters=10000, tol=1e-5), a=a[0, 0], b=b[0, 0])
    assert stopped.iterations < 10000 and stopped.marginal_error < 1e-5


def test_ipot_float32_under_bf16_autocast_and_no_grad() -> None:
    cost = (torch.rand(10, 8, generator=_gen(24)) * 2).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = ipot(cost.bfloat16(), _opts(cost.bfloat16(), iters=50))
    assert res.plan.dtype == torch.float32 and res.cost.dtype == torch.float32
    assert not res.plan.requires_grad and not res.cost.requires_grad
    ref = ipot(cost.detach().bfloat16().float(), _opts(cost.detach().bfloat16().float(), iters=50))
    torch.testing.assert_close(res.plan, ref.plan)
    assert res.marginal_error < 1e-3


# --------------------------------------------------------------------------- front door


@pytest.mark.parametrize("method", TRANSPORT_METHODS)
def test_solve_transport_dispatches(method: str) -> None:
    cost, a, b = _problem(8, 6, seed=31)
    options = _opts(cost, eps=0.2, beta=0.2, iters=40, tol=0.0, solver=method)
    res = solve_transport(cost, options, a=a, b=b)
    direct = (
        sinkhorn_log(cost, options, a, b) if method == "sinkhorn" else ipot(cost, options, a, b)
    )
    assert isinstance(res, TransportResult)
    torch.testing.assert_close(res.plan, direct.plan, atol=0, rtol=0)
    default = solve_transport(cost, TransportOptions(local_solver=method))  # type: ignore[arg-type]
    assert torch.isfinite(default.plan).all()
    with pytest.raises(ValueError, match="local_solver"):
        TransportOptions(local_solver="emd")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad inputs


def _call(solver: str, cost, **kw):
    options = _opts(cost, eps=0.1, iters=kw.pop("iters", 100))
    if solver == "sinkhorn":
        return sinkhorn_log(cost, options, **kw)
    return ipot(cost, options, **kw)


_U4 = torch.full((4,), 0.25)
_U5 = torch.full((5,), 0.2)


def _nan_cost() -> torch.Tensor:
    c = torch.rand(4, 5)
    c[1, 2] = float("nan")
    return c


@pytest.mark.parametrize("solver", ["sinkhorn", "ipot"])
@pytest.mark.parametrize(
    "name, cost, kw",
    [
        ("a", torch.rand(4, 5), dict(a=torch.tensor([0.5, 0.6, -0.2, 0.1]))),  # negative
        ("b", torch.rand(4, 5), dict(b=torch.tensor([0.5, 0.5, 0.2, -0.3, 0.1]))),
        ("a", torch.rand(4, 5), dict(a=_U5)),  # wrong length
        ("b", torch.rand(4, 5), dict(b=_U4)),
        ("a", torch.rand(3, 4, 5), dict(a=torch.full((2, 4), 0.25))),  # batch dims do not match
        ("a", torch.rand(4, 5), dict(a=torch.full((4,), 0.3))),  # sums to 1.2
        ("b", torch.rand(4, 5), dict(b=torch.full((5,), 0.2 + 1e-3))),  # sums to 1.005
        ("a", torch.rand(4, 5), dict(a=torch.tensor([0.5, float("nan"), 0.25, 0.25]))),
        ("cost", _nan_cost(), {}),
        ("cost", torch.full((4, 5), float("inf")), {}),
        ("cost", torch.rand(5), {}),
    ],
)
def test_bad_inputs_name_the_argument(solver: str, name: str, cost, kw) -> None:
    with pytest.raises(ValueError, match=rf": {name} must"):
        _call(solver, cost, **kw)


def test_bad_settings_name_the_option() -> None:
    """The ranges live in ``TransportOptions``, checked once, when the options are made."""
    for name, value in (
        ("sinkhorn_eps", float("nan")),
        ("ipot_beta", 0.0),
        ("ipot_beta", -1.0),
        ("ipot_beta", float("inf")),
        ("sinkhorn_iters", 0),
        ("sinkhorn_tol", -1.0),
    ):
        with pytest.raises(ValueError, match=rf"{name}={value!r} \(must be"):
            TransportOptions(**{name: value})
    with pytest.raises(ValueError, match=": inner_iters must"):
        ipot(torch.rand(3, 3), TransportOptions(), inner_iters=0)


def test_marginal_mass_within_tolerance_is_accepted() -> None:
    a = torch.full((4,), 0.25 + 2e-5)  # sums to 1 + 8e-5 < 1e-4: accepted
    for solver in ("sinkhorn", "ipot"):
        assert torch.isfinite(_call(solver, torch.rand(4, 5), a=a, iters=5).plan).all()
