"""WCoRD loss: reference computations of both terms, Lipschitz constraint, toy distillation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodal.objectives import DotCritic, ProjectionHead, WCoRDLoss


@pytest.fixture(autouse=True)
def _single_thread():
    """These tensors are tiny: one intra-op thread is faster and does not spin when the CPUs are
    shared (two threads under load made this file 7x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _features(b: int, dt: int, ds: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(b, dt, generator=g), torch.randn(b, ds, generator=g)


def _sigma_max(head: ProjectionHead) -> float:
    return float(torch.linalg.matrix_norm(head.linear.weight.detach(), ord=2))


# ---------------------------------------------------------------------------- API and arguments


def test_defaults_and_hparams_round_trip() -> None:
    loss = WCoRDLoss(64, 32, num_samples=1000)
    hp = loss.hparams()
    assert hp == dict(
        teacher_dim=64, student_dim=32, num_samples=1000, embed_dim=128, num_negatives=16384,
        tau=0.07, momentum=0.5, lambda_global=0.8, lambda_local=0.1, lipschitz="spectral",
        critic="dot", sinkhorn_eps=0.05, sinkhorn_iters=100, sinkhorn_tol=1e-4, seed=0,
    )
    assert loss.num_negatives_effective == 999  # K capped at N - 1
    rebuilt = WCoRDLoss(**hp)
    assert rebuilt.hparams() == hp
    torch.testing.assert_close(rebuilt.state_dict(), loss.state_dict())  # seeded, deterministic


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(teacher_dim=0), dict(student_dim=-1), dict(num_samples=1), dict(embed_dim=0),
        dict(num_negatives=0), dict(tau=0.0), dict(tau=-0.1), dict(momentum=1.5),
        dict(lambda_global=-1.0), dict(lambda_local=float("nan")),
        dict(lambda_global=0.0, lambda_local=0.0), dict(lipschitz="gp"), dict(critic="mlp"),
        dict(sinkhorn_eps=0.0), dict(sinkhorn_iters=0), dict(sinkhorn_tol=-1e-3), dict(seed=-1),
        dict(num_samples=10.5),
    ],
)
def test_bad_constructor_arguments(kwargs: dict) -> None:
    args = dict(teacher_dim=8, student_dim=8, num_samples=10) | kwargs
    with pytest.raises(ValueError) as info:
        WCoRDLoss(**args)
    assert next(iter(kwargs)) in str(info.value) or "lambda" in str(info.value)


def test_forward_outputs_and_banks_untouched() -> None:
    loss = WCoRDLoss(12, 10, num_samples=40, embed_dim=16)
    t, s = _features(8, 12, 10)
    s.requires_grad_(True)
    banks = (loss.teacher_bank.memory.clone(), loss.student_bank.memory.clone())
    out = loss(t, s, torch.arange(8))
    assert set(out) == {"loss", "global", "local", "teacher_embed", "student_embed"}
    torch.testing.assert_close(out["loss"], 0.8 * out["global"] + 0.1 * out["local"])
    for key in ("teacher_embed", "student_embed"):
        assert out[key].shape == (8, 16) and not out[key].requires_grad
        torch.testing.assert_close(out[key].norm(dim=1), torch.ones(8))
    torch.testing.assert_close(loss.teacher_bank.memory, banks[0])  # forward never writes banks
    torch.testing.assert_close(loss.student_bank.memory, banks[1])
    out["loss"].backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    loss.update_memory(torch.arange(8), out["teacher_embed"], out["student_embed"])
    assert not torch.allclose(loss.teacher_bank.memory[:8], banks[0][:8])
    torch.testing.assert_close(loss.teacher_bank.memory[8:], banks[0][8:])


def test_sampled_negatives_exclude_batch() -> None:
    loss = WCoRDLoss(4, 4, num_samples=30, num_negatives=100)
    idx = torch.tensor([3, 7, 7, 29, 0])
    neg = loss.sample_negatives(idx)
    assert neg.numel() == 30 - 4  # K = min(29, N - #distinct)
    assert not torch.isin(neg, idx).any() and neg.unique().numel() == neg.numel()
    small = WCoRDLoss(4, 4, num_samples=30, num_negatives=5)
    assert small.sample_negatives(idx).numel() == 5
    with pytest.raises(ValueError):
        WCoRDLoss(4, 4, num_samples=4).sample_negatives(torch.arange(4))


def test_variants_skip_terms() -> None:
    t, s = _features(6, 5, 7)
    global_only = WCoRDLoss(5, 7, num_samples=20, lambda_local=0.0)
    out = global_only(t, s, torch.arange(6))
    assert float(out["local"]) == 0.0 and global_only.last_transport is None
    local_only = WCoRDLoss(5, 7, num_samples=20, lambda_global=0.0)
    assert local_only.teacher_bank is None and local_only.student_bank is None
    out = local_only(t, s, torch.arange(6))
    assert float(out["global"]) == 0.0 and local_only.last_transport is not None
    local_only.update_memory(torch.arange(6), out["teacher_embed"], out["student_embed"])  # no-op


def test_bf16_autocast_float32_terms() -> None:
    loss = WCoRDLoss(12, 10, num_samples=40, embed_dim=16).eval()  # eval: frozen power iteration
    t, s = _features(8, 12, 10, seed=1)
    neg = torch.arange(8, 40)
    ref = loss(t, s, torch.arange(8), negatives=neg)
    s.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(t, s, torch.arange(8), negatives=neg)
    for key in ("loss", "global", "local", "teacher_embed", "student_embed"):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all()
    # bf16 heads perturb the embeddings by ~1e-2; the terms must stay close to float32.
    torch.testing.assert_close(out["loss"], ref["loss"], atol=0.1, rtol=0.02)
    out["loss"].backward()
    assert torch.isfinite(s.grad).all()


# ---------------------------------------------------------------------------- the two terms


def test_global_term_matches_per_anchor_reference() -> None:
    n, b, d = 50, 6, 8
    loss = WCoRDLoss(9, 7, num_samples=n, embed_dim=d, tau=0.1, lambda_local=0.0, seed=3)
    g = _gen(11)
    loss.teacher_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    loss.student_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    idx = torch.tensor([4, 9, 13, 21, 30, 44])
    neg = torch.tensor([0, 1, 2, 5, 17, 18, 25, 33, 40, 41, 49])
    t, s = _features(b, 9, 7, seed=2)
    out = loss(t, s, idx, negatives=neg)

    u, v = out["teacher_embed"].double(), out["student_embed"].double()
    mem_t, mem_s = loss.teacher_bank.memory.double(), loss.student_bank.memory.double()
    tau = 0.1

    def one_side(anchors: torch.Tensor, partners: torch.Tensor, bank: torch.Tensor) -> float:
        total = 0.0
        for i in range(b):
            pos = float(anchors[i] @ partners[i]) / tau
            scores = [pos] + [float(anchors[i] @ bank[k]) / tau for k in neg.tolist()]
            total += -(pos - math.log(sum(math.exp(x) for x in scores)))
        return total / b

    want = one_side(u, v, mem_s) + one_side(v, u, mem_t)
    assert float(out["global"].detach()) == pytest.approx(want, abs=1e-5, rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(0.8 * want, abs=1e-5, rel=1e-5)


def test_global_term_gradient_skips_bank() -> None:
    loss = WCoRDLoss(6, 6, num_samples=20, embed_dim=4, lambda_local=0.0)
    t, s = _features(4, 6, 6)
    s.requires_grad_(True)
    loss(t, s, torch.arange(4))["loss"].backward()
    assert loss.teacher_bank.memory.grad is None and s.grad.abs().sum() > 0
    assert loss.teacher_head.linear.parametrizations.weight.original.grad is not None


def test_local_term_gradient_is_frozen_plan_gradient() -> None:
    loss = WCoRDLoss(10, 8, num_samples=30, embed_dim=6, lambda_global=0.0, lambda_local=1.0,
                     sinkhorn_eps=0.1, sinkhorn_iters=500, sinkhorn_tol=1e-7).eval()
    t, s = _features(7, 10, 8, seed=5)
    s1 = s.clone().requires_grad_(True)
    out = loss(t, s1, torch.arange(7))
    out["loss"].backward()
    plan = loss.last_transport.plan.clone()
    torch.testing.assert_close(plan.sum(0), torch.full((7,), 1 / 7), atol=1e-6, rtol=0)
    head_grad = loss.student_head.linear.parametrizations.weight.original.grad.clone()
    loss.zero_grad()

    # Recompute with the plan as a constant: grad of <P, C(s)> must be identical.
    s2 = s.clone().requires_grad_(True)
    u = loss.teacher_head(t)
    v = loss.student_head(s2)
    frozen = (plan * (1.0 - u @ v.t())).sum()
    torch.testing.assert_close(frozen, out["local"])
    frozen.backward()
    torch.testing.assert_close(s1.grad, s2.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        head_grad, loss.student_head.linear.parametrizations.weight.original.grad, atol=1e-6, rtol=1e-5
    )
    # Closed form at the embedding level: d<P, 1 - u v^T>/dv = -P^T u.
    v_leaf = out["student_embed"].clone().requires_grad_(True)
    (plan * (1.0 - out["teacher_embed"] @ v_leaf.t())).sum().backward()
    torch.testing.assert_close(v_leaf.grad, -plan.t() @ out["teacher_embed"])


def test_local_term_finite_differences_with_frozen_plan() -> None:
    loss = WCoRDLoss(5, 5, num_samples=10, embed_dim=4, lambda_global=0.0, lambda_local=1.0,
                     lipschitz="none", sinkhorn_eps=0.2).eval()
    t, s = _features(4, 5, 5, seed=6)
    s = s.requires_grad_(True)
    out = loss(t, s, torch.arange(4))
    out["loss"].backward()
    plan = loss.last_transport.plan.double()
    w, bias = loss.student_head.linear.weight.double(), loss.student_head.linear.bias.double()
    u = out["teacher_embed"].double()

    def frozen_local(x: torch.Tensor) -> float:
        v = F.normalize(x @ w.t() + bias, dim=-1)
        return float((plan * (1.0 - u @ v.t())).sum().detach())

    h = 1e-6
    fd = torch.zeros_like(s, dtype=torch.float64)
    base = s.detach().double()
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            e = torch.zeros_like(base)
            e[i, j] = h
            fd[i, j] = (frozen_local(base + e) - frozen_local(base - e)) / (2 * h)
    torch.testing.assert_close(s.grad.double(), fd, atol=2e-5, rtol=1e-3)


# ---------------------------------------------------------------------------- Lipschitz constraint


def _train_a_few_steps(loss: WCoRDLoss, steps: int = 30, lr: float = 0.01) -> None:
    opt = torch.optim.Adam(loss.parameters(), lr=lr)
    g = _gen(7)
    for _ in range(steps):
        idx = torch.randperm(loss.num_samples, generator=g)[:8]
        t = torch.randn(8, 12, generator=g) * 3
        s = torch.randn(8, 10, generator=g) * 3
        out = loss(t, s, idx)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        loss.update_memory(idx, out["teacher_embed"], out["student_embed"])


def test_spectral_heads_are_one_lipschitz_after_training() -> None:
    loss = WCoRDLoss(12, 10, num_samples=40, embed_dim=16)
    _train_a_few_steps(loss)
    with torch.no_grad():  # blow up the raw weight: the normalised one must not follow
        loss.student_head.linear.parametrizations.weight.original.mul_(5.0)
    _train_a_few_steps(loss, steps=5)
    # Train mode: reading the weight refreshes the power iteration, i.e. this is the weight the
    # next forward uses (eval mode would reuse the estimate from before the last optimiser step).
    for head in (loss.teacher_head, loss.student_head):
        assert _sigma_max(head) <= 1.0 + 1e-3
        assert _sigma_max(head) >= 1.0 - 1e-3  # normalised to 1, not merely below it
    for lr in (0.05, 0.001):  # harsher and gentler optimisers
        other = WCoRDLoss(12, 10, num_samples=40, embed_dim=16, seed=1)
        _train_a_few_steps(other, lr=lr)
        for head in (other.teacher_head, other.student_head):
            assert _sigma_max(head) <= 1.0 + 1e-3


def test_unconstrained_heads_are_not_normalised() -> None:
    loss = WCoRDLoss(12, 10, num_samples=40, embed_dim=16, lipschitz="none")
    with torch.no_grad():
        loss.student_head.linear.weight.mul_(5.0)
    _train_a_few_steps(loss)
    assert _sigma_max(loss.student_head) > 2.0
    assert not hasattr(loss.student_head.linear, "parametrizations")


def _critic_gradient_ratios(loss: WCoRDLoss, scale: float) -> torch.Tensor:
    """``|grad_t g| * tau * |h_T(t)|`` at random feature points (<= sigma_max(W_T) by the bound)."""
    g = _gen(9)
    t = (torch.randn(256, 12, generator=g) * scale).requires_grad_(True)
    s = torch.randn(256, 10, generator=g) * scale
    u, v = loss.teacher_head(t), loss.student_head(s)
    loss.critic(u, v).sum().backward()  # pairs are independent: row i of t.grad is grad of g_i
    z_norm = loss.teacher_head.project(t).norm(dim=1).detach()
    return t.grad.norm(dim=1) * loss.critic.tau * z_norm


def test_measured_critic_lipschitz_within_bound() -> None:
    loss = WCoRDLoss(12, 10, num_samples=40, embed_dim=16, tau=0.07)
    _train_a_few_steps(loss)
    loss.eval()
    ratios = _critic_gradient_ratios(loss, scale=1.0)
    assert ratios.max() <= 1.0 + 1e-3  # |grad_t g| <= 1 / (tau |h_T(t)|)
    assert ratios.max() > 0.3  # and the bound is not vacuous
    # Features projecting to norm >= 1: the critic is (1/tau)-Lipschitz in the features.
    g = _gen(10)
    t = (torch.randn(256, 12, generator=g) * 20).requires_grad_(True)
    far = loss.teacher_head.project(t).norm(dim=1) >= 1
    loss.critic(loss.teacher_head(t), loss.student_head(torch.randn(256, 10, generator=g))).sum().backward()
    assert far.sum() > 100
    assert t.grad.norm(dim=1)[far].max() <= (1 / 0.07) * (1 + 1e-3)
    # In the embeddings the constant is exactly 1/tau.
    assert DotCritic(0.07).lipschitz_bound == pytest.approx(1 / 0.07)


def test_unconstrained_critic_exceeds_bound() -> None:
    loss = WCoRDLoss(12, 10, num_samples=40, embed_dim=16, lipschitz="none")
    with torch.no_grad():
        loss.teacher_head.linear.weight.mul_(5.0)
    assert _critic_gradient_ratios(loss, scale=1.0).max() > 1.5


# ---------------------------------------------------------------------------- toy distillation


def test_toy_distillation_recovers_pairs() -> None:
    """Student input = fixed random linear map of the teacher features + noise: WCoRD must align them."""
    n, dt, dy, ds, b = 256, 32, 24, 16, 64
    g = _gen(0)
    teacher = torch.randn(n, dt, generator=g)
    mixing = torch.randn(dt, dy, generator=g) / math.sqrt(dt)
    student_input = teacher @ mixing + 0.05 * torch.randn(n, dy, generator=g)
    torch.manual_seed(0)
    student = torch.nn.Linear(dy, ds)
    loss = WCoRDLoss(dt, ds, num_samples=n, embed_dim=32, seed=0)
    opt = torch.optim.Adam([*student.parameters(), *loss.parameters()], lr=1e-2)

    def retrieval() -> float:
        loss.eval()
        with torch.no_grad():
            u = loss.teacher_head(teacher)
            v = loss.student_head(student(student_input))
        loss.train()
        return float(((v @ u.t()).argmax(1) == torch.arange(n)).float().mean())

    start = retrieval()
    losses = []
    for _ in range(200):
        idx = torch.randperm(n, generator=g)[:b]
        out = loss(teacher[idx], student(student_input[idx]), idx)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        loss.update_memory(idx, out["teacher_embed"], out["student_embed"])
        losses.append(out["loss"].item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert start < 0.05
    assert last < 0.1 * first
    assert retrieval() > 0.9
