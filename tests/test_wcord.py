"""WCoRD loss: reference computations of both terms, Lipschitz constraint, toy distillation."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from xmodal.core.registry import METHODS
from xmodal.objectives import CRITICS, DotCritic, ProjectionHead, TransportNotConverged, WCoRDLoss
from xmodal.objectives.critic import BilinearCritic, MLPCritic, build_critic
from xmodal.objectives.lipschitz import gradient_norms, maximise_gradient
from xmodal.objectives.objective import ObjectiveContext
from xmodal.objectives.wcord import WCoRDOptions

pytestmark = pytest.mark.usefixtures("single_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _features(b: int, dt: int, ds: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(b, dt, generator=g), torch.randn(b, ds, generator=g)


def _sigma_max(head: ProjectionHead) -> float:
    return float(torch.linalg.matrix_norm(head.linear.weight.detach(), ord=2))


# ---------------------------------------------------------------------------- API and arguments


def test_defaults_and_hparams_round_trip() -> None:
    loss = WCoRDLoss(32, 64, num_samples=1000)
    hp = loss.hparams()
    assert hp == dict(
        teacher_dim=64,
        student_dim=32,
        num_samples=1000,
        embed_dim=128,
        num_negatives=16384,
        tau=0.07,
        momentum=0.5,
        estimator="nce",
        lambda_global=0.8,
        lambda_local=0.1,
        lipschitz="spectral",
        gp_weight=10.0,
        critic="dot",
        critic_hidden=256,
        negatives="uniform",
        sharing="batch",
        sinkhorn_eps=0.05,
        sinkhorn_iters=500,
        sinkhorn_tol=1e-3,
        seed=0,
        local_solver="sinkhorn",
        ipot_beta=1.0,
        local_scope="process",
        bank_dtype="float32",
        alpha=0.0,
        beta=0.0,
        kd_temperature=4.0,
    )
    assert loss.num_negatives_effective == 999  # K capped at N - 1
    rebuilt = WCoRDLoss(**hp)
    assert rebuilt.hparams() == hp
    torch.testing.assert_close(rebuilt.state_dict(), loss.state_dict())  # seeded, deterministic


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(teacher_dim=0),
        dict(student_dim=-1),
        dict(num_samples=1),
        dict(embed_dim=0),
        dict(num_negatives=0),
        dict(tau=0.0),
        dict(tau=-0.1),
        dict(momentum=1.5),
        dict(lambda_global=-1.0),
        dict(lambda_local=float("nan")),
        dict(lambda_global=0.0, lambda_local=0.0),
        dict(lipschitz="gp"),
        dict(critic="mlp2"),
        dict(sinkhorn_eps=0.0),
        dict(sinkhorn_iters=0),
        dict(sinkhorn_tol=-1e-3),
        dict(seed=-1),
        dict(num_samples=10.5),
        dict(gp_weight=-1.0),
        dict(gp_weight=float("inf")),
        dict(critic_hidden=0),
        dict(critic_hidden=2.5),
        dict(negatives="hard"),
        dict(sharing="pair"),
        dict(bank_dtype="float64"),
        dict(negatives="queue", sharing="anchor"),
        dict(negatives="other_class"),  # without sample_labels
        dict(ipot_beta=0.0),
        dict(sample_labels=torch.zeros(9, dtype=torch.long)),  # needs [num_samples]
        dict(sample_labels=torch.zeros(10)),  # float labels
        dict(sample_labels=[0] * 10),
    ],
)
def test_bad_constructor_arguments(kwargs: dict) -> None:
    args = dict(teacher_dim=8, student_dim=8, num_samples=10) | kwargs
    with pytest.raises(ValueError) as info:
        WCoRDLoss(**args)
    assert next(iter(kwargs)) in str(info.value) or "lambda" in str(info.value)


def test_forward_outputs_and_banks_untouched() -> None:
    loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=16)
    t, s = _features(8, 12, 10)
    s.requires_grad_(True)
    banks = (loss.teacher_bank.memory.clone(), loss.student_bank.memory.clone())
    out = loss(s, t, indices=torch.arange(8))
    assert set(out) == {
        "loss",
        "global",
        "local",
        "penalty",
        "marginal_error",
        "teacher_embed",
        "student_embed",
    }
    assert float(out["penalty"].detach()) == 0.0  # only under lipschitz="gradient_penalty"
    torch.testing.assert_close(out["loss"], 0.8 * out["global"] + 0.1 * out["local"])
    for key in ("teacher_embed", "student_embed"):
        assert out[key].shape == (8, 16) and not out[key].requires_grad
        assert (out[key].norm(dim=1) <= 1 + 1e-6).all()  # on the unit ball
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
    global_only = WCoRDLoss(7, 5, num_samples=20, lambda_local=0.0)
    out = global_only(s, t, indices=torch.arange(6))
    assert float(out["local"]) == 0.0 and global_only.last_transport is None
    local_only = WCoRDLoss(7, 5, num_samples=20, lambda_global=0.0)
    assert local_only.teacher_bank is None and local_only.student_bank is None
    out = local_only(s, t, indices=torch.arange(6))
    assert float(out["global"]) == 0.0 and local_only.last_transport is not None
    local_only.update_memory(torch.arange(6), out["teacher_embed"], out["student_embed"])  # no-op


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(lipschitz="gradient_penalty", critic="bilinear"),
        dict(critic="mlp", critic_hidden=8, sharing="anchor"),
    ],
)
def test_bf16_autocast_float32_terms(options: dict) -> None:
    loss = WCoRDLoss(
        10, 12, num_samples=40, embed_dim=16, **options
    ).eval()  # eval: frozen power iteration
    t, s = _features(8, 12, 10, seed=1)
    neg = torch.arange(8, 40)
    ref = loss(s, t, indices=torch.arange(8), negatives=neg)
    s.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(s, t, indices=torch.arange(8), negatives=neg)
    for key in ("loss", "global", "local", "penalty", "teacher_embed", "student_embed"):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all()
    # bf16 heads perturb the embeddings by ~1e-2; the terms must stay close to float32.
    torch.testing.assert_close(out["loss"], ref["loss"], atol=0.1, rtol=0.02)
    out["loss"].backward()
    assert torch.isfinite(s.grad).all()


# ---------------------------------------------------------------------------- the two terms


def test_global_term_matches_per_anchor_reference() -> None:
    n, b, d = 50, 6, 8
    loss = WCoRDLoss(
        7, 9, num_samples=n, embed_dim=d, tau=0.1, lambda_local=0.0, seed=3, estimator="infonce"
    )
    g = _gen(11)
    loss.teacher_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    loss.student_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    idx = torch.tensor([4, 9, 13, 21, 30, 44])
    neg = torch.tensor([0, 1, 2, 5, 17, 18, 25, 33, 40, 41, 49])
    t, s = _features(b, 9, 7, seed=2)
    out = loss(s, t, indices=idx, negatives=neg)

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


@pytest.mark.parametrize("masked", [False, True])
def test_nce_global_term_matches_per_anchor_reference(masked: bool) -> None:
    """estimator='nce': CRD's binary NCE with Z = N * mean(exp(scores)) estimated once.

    Checked against a float64 loop over anchors (masked negatives drop out of the negatives' sum
    only).
    """
    n, b, d, k, tau = 40, 5, 6, 8, 0.2
    labels = torch.arange(n) % 3
    loss = WCoRDLoss(
        7,
        9,
        num_samples=n,
        embed_dim=d,
        tau=tau,
        lambda_local=0.0,
        seed=4,
        sample_labels=labels,
        negatives="other_class" if masked else "uniform",
    )
    g = _gen(13)
    loss.teacher_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    loss.student_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    idx = torch.tensor([0, 3, 7, 20, 33])
    neg = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(b)])
    mem_t, mem_s = loss.teacher_bank.memory.double(), loss.student_bank.memory.double()

    def reference(u: torch.Tensor, v: torch.Tensor, z: tuple[float, float] | None):
        sides = []
        for anchors, partners, bank, _swap in ((u, v, mem_s, False), (v, u, mem_t, True)):
            rows = []  # per anchor: the positive score and the kept negatives' scores
            for i in range(b):
                keep = [j for j in neg[i].tolist() if not (masked and labels[j] == labels[idx[i]])]
                rows.append(
                    (
                        float(anchors[i] @ partners[i]) / tau,
                        [float(bank[j] @ anchors[i]) / tau for j in keep],
                    )
                )
            sides.append(rows)
        if z is None:  # Z = N * mean of exp over every finite score of the batch, per side
            z = tuple(
                n
                * sum(math.exp(p) + sum(math.exp(x) for x in ns) for p, ns in rows)
                / sum(1 + len(ns) for _, ns in rows)
                for rows in sides
            )
        c = k / n  # K * P_noise, the masked columns counted as in CRD
        total = 0.0
        for rows, zz in zip(sides, z, strict=True):
            for p, ns in rows:
                prob = math.exp(p) / zz
                total -= (
                    math.log(prob / (prob + c))
                    + sum(math.log(c / (math.exp(x) / zz + c)) for x in ns)
                ) / b
        return total, z

    t, s = _features(b, 9, 7, seed=3)
    out = loss(s, t, indices=idx, negatives=neg)
    want, z = reference(out["teacher_embed"].double(), out["student_embed"].double(), None)
    assert float(out["global"].detach()) == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert (float(loss.z_teacher), float(loss.z_student)) == pytest.approx(z, rel=1e-5)
    # Z is estimated once: a second batch reuses it (and the buffers travel in the state dict).
    t2, s2 = _features(b, 9, 7, seed=8)
    out2 = loss(s2, t2, indices=idx, negatives=neg)
    want2, _ = reference(out2["teacher_embed"].double(), out2["student_embed"].double(), z)
    assert float(out2["global"].detach()) == pytest.approx(want2, rel=1e-5, abs=1e-6)
    assert {"z_teacher", "z_student"} <= set(loss.state_dict())


def test_estimators_differ_and_infonce_is_optional() -> None:
    """The two forms are different losses of the same scores; a bad estimator name is refused."""
    t, s = _features(6, 6, 5, seed=4)
    values = {
        e: float(
            _banked_loss(estimator=e)(
                s, t, indices=torch.arange(6), negatives=torch.arange(10, 30)
            )["global"]
        )
        for e in ("nce", "infonce")
    }
    assert values["nce"] != pytest.approx(values["infonce"], rel=1e-3)
    with pytest.raises(ValueError, match="estimator"):
        WCoRDLoss(5, 6, num_samples=30, estimator="softmax")


def test_global_term_gradient_skips_bank() -> None:
    loss = WCoRDLoss(6, 6, num_samples=20, embed_dim=4, lambda_local=0.0)
    t, s = _features(4, 6, 6)
    s.requires_grad_(True)
    loss(s, t, indices=torch.arange(4))["loss"].backward()
    assert loss.teacher_bank.memory.grad is None and s.grad.abs().sum() > 0
    assert loss.teacher_head.linear.parametrizations.weight.original.grad is not None


def test_local_term_gradient_is_frozen_plan_gradient() -> None:
    loss = WCoRDLoss(
        8,
        10,
        num_samples=30,
        embed_dim=6,
        lambda_global=0.0,
        lambda_local=1.0,
        sinkhorn_eps=0.1,
        sinkhorn_iters=500,
        sinkhorn_tol=1e-7,
    ).eval()
    t, s = _features(7, 10, 8, seed=5)
    s1 = s.clone().requires_grad_(True)
    out = loss(s1, t, indices=torch.arange(7))
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
        head_grad,
        loss.student_head.linear.parametrizations.weight.original.grad,
        atol=1e-6,
        rtol=1e-5,
    )
    # Closed form at the embedding level: d<P, 1 - u v^T>/dv = -P^T u.
    v_leaf = out["student_embed"].clone().requires_grad_(True)
    (plan * (1.0 - out["teacher_embed"] @ v_leaf.t())).sum().backward()
    torch.testing.assert_close(v_leaf.grad, -plan.t() @ out["teacher_embed"])


def test_local_term_finite_differences_with_frozen_plan() -> None:
    loss = WCoRDLoss(
        5,
        5,
        num_samples=10,
        embed_dim=4,
        lambda_global=0.0,
        lambda_local=1.0,
        lipschitz="none",
        sinkhorn_eps=0.2,
    ).eval()
    t, s = _features(4, 5, 5, seed=6)
    s = s.requires_grad_(True)
    out = loss(s, t, indices=torch.arange(4))
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
        out = loss(s, t, indices=idx)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        loss.update_memory(idx, out["teacher_embed"], out["student_embed"])


def test_spectral_heads_are_one_lipschitz_after_training() -> None:
    loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=16)
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
        other = WCoRDLoss(10, 12, num_samples=40, embed_dim=16, seed=1)
        _train_a_few_steps(other, lr=lr)
        for head in (other.teacher_head, other.student_head):
            assert _sigma_max(head) <= 1.0 + 1e-3


def test_unconstrained_heads_are_not_normalised() -> None:
    loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=16, lipschitz="none")
    with torch.no_grad():
        loss.student_head.linear.weight.mul_(5.0)
    _train_a_few_steps(loss)
    assert _sigma_max(loss.student_head) > 2.0
    assert not hasattr(loss.student_head.linear, "parametrizations")


_SCALES = (0.01, 0.1, 1.0, 10.0)


def _lipschitz_ratio(loss: WCoRDLoss, scale: float, seed: int = 9) -> float:
    """``max |grad g| * tau`` over 512 random pairs of raw features at ``scale``.

    Computed in ``t`` and in ``s`` separately. The bound under ``lipschitz="spectral"`` is 1.
    """
    g = _gen(seed)
    norm_t, norm_s = gradient_norms(
        loss.score,
        torch.randn(512, 12, generator=g) * scale,
        torch.randn(512, 10, generator=g) * scale,
    )
    return float(torch.maximum(norm_t, norm_s).max()) * loss.options.tau


def _adversarial_heads(loss: WCoRDLoss, steps: int = 300) -> None:
    """Train the heads and critic to *maximise* the critic's gradient norm.

    At small and large feature scales, in train mode as in training: the worst case for a
    constraint.
    """
    maximise_gradient(loss.score, loss.parameters(), (12, 10), _SCALES, steps)


@pytest.mark.parametrize("critic", CRITICS)
def test_critic_is_lipschitz_in_raw_features_at_every_scale(critic: str) -> None:
    loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=16, critic=critic, critic_hidden=16)
    _adversarial_heads(loss)
    for head in (loss.teacher_head, loss.student_head):  # moved far from the initialisation
        assert float(head.linear.parametrizations.weight.original.detach().norm()) > 5.0
    ratios = [_lipschitz_ratio(loss, scale) for scale in _SCALES]
    assert max(ratios) <= 1.0 + 1e-2, ratios
    assert max(ratios) > 0.5, ratios  # the adversary got close: the bound is not vacuous
    # Huge raw weights (what an optimiser could drift to): the normalised weight follows after
    # the power iteration's train-mode refresh, and the bound still holds.
    with torch.no_grad():
        for head in (loss.teacher_head, loss.student_head):
            head.linear.parametrizations.weight.original.mul_(1e3)
    for _ in range(5):
        loss.score(*_features(4, 12, 10))
    assert max(_lipschitz_ratio(loss, scale) for scale in _SCALES) <= 1.0 + 1e-2


def test_unconstrained_critic_exceeds_bound() -> None:
    loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=16, lipschitz="none")
    _adversarial_heads(loss, steps=50)
    ratios = [_lipschitz_ratio(loss, scale) for scale in _SCALES]
    assert max(ratios) > 2.0, ratios  # L2 normalisation is 1/|z|-Lipschitz: unbounded near 0
    assert ratios[0] > ratios[-1]  # and it grows as the features shrink


def test_spectral_sigma_is_one_at_construction() -> None:
    for seed in range(5):
        loss = WCoRDLoss(200, 300, num_samples=40, seed=seed, critic="bilinear")
        for module in (loss.teacher_head.linear, loss.student_head.linear, loss.critic.linear):
            assert abs(float(torch.linalg.matrix_norm(module.weight.detach(), ord=2)) - 1.0) <= 1e-5


def test_lipschitz_modes_project_onto_ball_or_sphere() -> None:
    t, s = _features(16, 12, 10)
    for lipschitz, onto in (("spectral", "ball"), ("gradient_penalty", "ball"), ("none", "sphere")):
        loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=16, lipschitz=lipschitz)
        out = loss(s * 0.01, t * 0.01, indices=torch.arange(16))
        norms = out["student_embed"].norm(dim=1)
        if onto == "ball":
            z = loss.student_head.project(s * 0.01).detach()
            torch.testing.assert_close(
                out["student_embed"], z / z.norm(dim=1, keepdim=True).clamp_min(1)
            )
            assert norms.max() < 1.0  # small features stay inside the ball
        else:
            torch.testing.assert_close(norms, torch.ones(16))
        assert loss.teacher_bank.onto == onto
        with torch.no_grad():
            torch.testing.assert_close(
                loss.score(t, s),
                loss.critic(out["teacher_embed"] * 0 + loss.teacher_head(t), loss.student_head(s)),
            )


# ---------------------------------------------------------------------------- toy distillation


@pytest.mark.parametrize("estimator, drop", [("nce", 0.2), ("infonce", 0.1)])
def test_toy_distillation_recovers_pairs(estimator: str, drop: float) -> None:
    """WCoRD must align a student input that is a noisy linear map of the teacher features.

    The map is fixed and random; this holds under either estimator (NCE's loss keeps a floor from
    its negatives' terms).
    """
    n, dt, dy, ds, b = 256, 32, 24, 16, 64
    g = _gen(0)
    teacher = torch.randn(n, dt, generator=g)
    mixing = torch.randn(dt, dy, generator=g) / math.sqrt(dt)
    student_input = teacher @ mixing + 0.05 * torch.randn(n, dy, generator=g)
    torch.manual_seed(0)
    student = torch.nn.Linear(dy, ds)
    loss = WCoRDLoss(ds, dt, num_samples=n, embed_dim=32, seed=0, estimator=estimator)
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
        out = loss(student(student_input[idx]), teacher[idx], indices=idx)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        loss.update_memory(idx, out["teacher_embed"], out["student_embed"])
        losses.append(out["loss"].item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert start < 0.05
    assert last < drop * first
    assert retrieval() > 0.9


# ---------------------------------------------------------------------------- critics


def _randomised_critic(kind: str, d: int, tau: float, spectral: bool, seed: int = 0):
    """A critic with non-trivial weights (bilinear's identity init would hide its asymmetry)."""
    torch.manual_seed(seed)
    critic = build_critic(
        WCoRDOptions(critic=kind, embed_dim=d, tau=tau, critic_hidden=12), spectral=spectral
    )
    if kind == "bilinear":
        with torch.no_grad():
            weight = (
                critic.linear.parametrizations.weight.original if spectral else critic.linear.weight
            )
            weight.copy_(torch.randn(d, d))
    return critic


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=_gen(seed)), dim=-1)


@pytest.mark.parametrize("kind", CRITICS)
def test_critics_share_interface_and_argument_order(kind: str) -> None:
    b, k, d, tau = 5, 7, 6, 0.2
    critic = _randomised_critic(kind, d, tau, spectral=False).double()
    u, v = _unit(b, d, seed=1).double(), _unit(b, d, seed=2).double()
    shared, per_anchor = _unit(k, d, seed=3).double(), _unit(b, k, d, seed=4).double()

    def g(teacher: torch.Tensor, student: torch.Tensor) -> float:  # one pair at a time
        return float(critic(teacher.unsqueeze(0), student.unsqueeze(0)))

    with torch.no_grad():
        torch.testing.assert_close(
            critic(u, v), torch.tensor([g(u[i], v[i]) for i in range(b)]).double()
        )
        want_t = torch.tensor([[g(u[i], shared[j]) for j in range(k)] for i in range(b)]).double()
        want_s = torch.tensor([[g(shared[j], v[i]) for j in range(k)] for i in range(b)]).double()
        torch.testing.assert_close(critic.against(u, shared), want_t)
        torch.testing.assert_close(critic.against_teachers(shared, v), want_s)
        want_t = torch.tensor(
            [[g(u[i], per_anchor[i, j]) for j in range(k)] for i in range(b)]
        ).double()
        want_s = torch.tensor(
            [[g(per_anchor[i, j], v[i]) for j in range(k)] for i in range(b)]
        ).double()
        torch.testing.assert_close(critic.against(u, per_anchor), want_t)
        torch.testing.assert_close(critic.against_teachers(per_anchor, v), want_s)
        if kind != "dot":  # asymmetric: swapping the roles changes the scores
            assert not torch.allclose(critic.against(u, shared), critic.against_teachers(shared, u))
    with pytest.raises(ValueError):
        critic.against(u, _unit(b + 1, k, d, seed=5).double())


def test_bilinear_starts_as_dot_critic() -> None:
    u, v, others = _unit(4, 8, seed=1), _unit(4, 8, seed=2), _unit(9, 8, seed=3)
    options = WCoRDOptions(embed_dim=8, tau=0.1)
    dot = DotCritic(options)
    for spectral in (True, False):
        bilinear = BilinearCritic(options, spectral=spectral)
        torch.testing.assert_close(bilinear(u, v), dot(u, v))
        torch.testing.assert_close(bilinear.against(u, others), dot.against(u, others))
        torch.testing.assert_close(
            bilinear.against_teachers(others, v), dot.against_teachers(others, v)
        )


@pytest.mark.parametrize("per_anchor", [False, True])
def test_mlp_critic_chunked_matches_direct_loop(per_anchor: bool) -> None:
    """Chunked (and checkpointed) scoring of K negatives == a loop over pairs, values and grads."""
    b, k, d, hidden = 3, 11, 4, 5
    torch.manual_seed(0)
    options = WCoRDOptions(embed_dim=d, tau=0.5, critic_hidden=hidden)
    chunked = MLPCritic(options, spectral=True, chunk_elements=2 * b * hidden)  # 2 per chunk
    whole = MLPCritic(options, spectral=True)
    whole.load_state_dict(chunked.state_dict())
    chunked.eval(), whole.eval()  # frozen power iteration: both use the same normalised weights
    others = _unit(b, k, d, seed=3) if per_anchor else _unit(k, d, seed=3)
    u0, v0 = _unit(b, d, seed=1), _unit(b, d, seed=2)

    def direct(
        critic: MLPCritic, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows_t, rows_s = [], []
        for i in range(b):
            cand = others[i] if per_anchor else others
            rows_t.append(torch.stack([critic(u[i : i + 1], cand[j : j + 1])[0] for j in range(k)]))
            rows_s.append(torch.stack([critic(cand[j : j + 1], v[i : i + 1])[0] for j in range(k)]))
        return torch.stack(rows_t), torch.stack(rows_s)

    results = []
    for critic, fn in ((chunked, None), (whole, direct)):
        u, v = u0.clone().requires_grad_(True), v0.clone().requires_grad_(True)
        if fn is None:
            st, ss = critic.against(u, others), critic.against_teachers(others, v)
        else:
            st, ss = fn(critic, u, v)
        assert st.shape == ss.shape == (b, k)
        (st.square().sum() + ss.sin().sum()).backward()
        grads = [p.grad.clone() for p in critic.parameters()]
        results.append((st.detach(), ss.detach(), u.grad, v.grad, grads))
    for got, want in zip(results[0][:4], results[1][:4], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for got, want in zip(results[0][4], results[1][4], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bilinear", "mlp"])
def test_spectral_critic_lipschitz_on_sphere(kind: str) -> None:
    tau, d = 0.1, 6
    critic = _randomised_critic(kind, d, tau, spectral=True, seed=2)
    with torch.no_grad():  # blow up the raw weights: the normalised ones must not follow
        for name, p in critic.named_parameters():
            if "original" in name:
                p.mul_(7.0)
    for _ in range(30):  # train mode: each read refreshes the power iteration, as during training
        critic(_unit(2, d, seed=0), _unit(2, d, seed=1))
    u = _unit(512, d, seed=1).requires_grad_(True)
    v = _unit(512, d, seed=2).requires_grad_(True)
    critic(u, v).sum().backward()
    # The ambient gradient bounds the tangential one: |grad| <= sigma_max(...) / tau <= 1/tau.
    worst = max(float(u.grad.norm(dim=1).max()), float(v.grad.norm(dim=1).max()))
    assert worst <= critic.lipschitz_bound * (1 + 2e-3)
    assert worst > 0.2 * critic.lipschitz_bound
    loose = _randomised_critic(kind, d, tau, spectral=False, seed=2)
    with torch.no_grad():
        for p in loose.parameters():
            p.mul_(7.0)
    u = _unit(512, d, seed=1).requires_grad_(True)
    loose(u, _unit(512, d, seed=2)).sum().backward()
    assert float(u.grad.norm(dim=1).max()) > 1.5 * loose.lipschitz_bound


@pytest.mark.parametrize("kind", CRITICS)
@pytest.mark.parametrize("masked", [False, True])
def test_global_term_reference_all_critics(kind: str, masked: bool) -> None:
    """Exact value against a per-anchor loop scoring g(u_i, mS_k) and g(mT_k, v_i).

    Per-anchor negatives, with and without same-class masking.
    """
    n, b, d, k, tau = 40, 5, 6, 8, 0.2
    labels = torch.arange(n) % 3
    loss = WCoRDLoss(
        7,
        9,
        num_samples=n,
        embed_dim=d,
        tau=tau,
        lambda_local=0.0,
        critic=kind,
        critic_hidden=10,
        lipschitz="none",
        seed=4,
        sample_labels=labels,
        negatives="other_class" if masked else "uniform",
        estimator="infonce",
    )
    loss.critic = _randomised_critic(kind, d, tau, spectral=False, seed=6)
    g = _gen(12)
    loss.teacher_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    loss.student_bank.memory.copy_(F.normalize(torch.randn(n, d, generator=g), dim=1))
    idx = torch.tensor([0, 3, 7, 20, 33])
    neg = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(b)])
    neg[1] = torch.tensor([6, 9, 12, 15, 18, 21, 24, 27])  # all of class 0 = the class of anchor 3
    t, s = _features(b, 9, 7, seed=3)
    out = loss(s, t, indices=idx, negatives=neg)
    u, v = out["teacher_embed"], out["student_embed"]
    mem_t, mem_s = loss.teacher_bank.memory, loss.student_bank.memory

    def score(a: torch.Tensor, c: torch.Tensor) -> float:
        with torch.no_grad():
            return float(loss.critic(a.unsqueeze(0), c.unsqueeze(0)))

    total, empty_anchor_terms = 0.0, []
    for i in range(b):
        pos = score(u[i], v[i])
        keep = [j for j in neg[i].tolist() if not (masked and labels[j] == labels[idx[i]])]
        for scores in (
            [pos] + [score(u[i], mem_s[j]) for j in keep],
            [pos] + [score(mem_t[j], v[i]) for j in keep],
        ):
            term = math.log(sum(math.exp(x) for x in scores)) - pos
            total += term / b
            if not keep:
                empty_anchor_terms.append(term)
    assert float(out["global"].detach()) == pytest.approx(total, abs=1e-5, rel=1e-5)
    assert empty_anchor_terms == pytest.approx([0.0, 0.0] if masked else [], abs=1e-12)
    # Shared negatives ([K]) are the special case of equal per-anchor rows.
    shared = loss(s, t, indices=idx, negatives=neg[0])
    per_anchor = loss(s, t, indices=idx, negatives=neg[0].expand(b, k).clone())
    torch.testing.assert_close(shared["global"], per_anchor["global"])


# ---------------------------------------------------------------------------- negatives


def _banked_loss(**kwargs) -> WCoRDLoss:
    n = kwargs.pop("num_samples", 30)
    loss = WCoRDLoss(5, 6, num_samples=n, embed_dim=4, tau=0.3, lambda_local=0.0, **kwargs)
    g = _gen(21)
    loss.teacher_bank.memory.copy_(F.normalize(torch.randn(n, 4, generator=g), dim=1))
    loss.student_bank.memory.copy_(F.normalize(torch.randn(n, 4, generator=g), dim=1))
    return loss


def test_other_class_mask_and_labels_argument() -> None:
    labels = torch.arange(30) % 4
    loss = _banked_loss(negatives="other_class", sample_labels=labels, estimator="infonce")
    assert (
        torch.equal(loss.teacher_bank.labels, labels) and "teacher_bank.labels" in loss.state_dict()
    )
    t, s = _features(6, 6, 5, seed=4)
    t.requires_grad_(True)
    idx = torch.tensor([0, 1, 2, 3, 4, 5])
    neg = torch.arange(10, 30)
    out = loss(s, t, indices=idx, negatives=neg)
    # Explicit labels equal to the stored ones change nothing; others change the mask.
    torch.testing.assert_close(
        loss(s, t, indices=idx, negatives=neg, labels=labels[idx])["global"], out["global"]
    )
    other = loss(s, t, indices=idx, negatives=neg, labels=(labels[idx] + 1) % 4)["global"]
    assert not torch.allclose(other, out["global"])
    # Masked == dropping those negatives by hand (uniform loss on a per-anchor subset).
    uniform = _banked_loss(estimator="infonce")
    manual = 0.0
    for i in range(6):
        keep = neg[labels[neg] != labels[idx[i]]]
        manual = (
            manual
            + uniform(s[i : i + 1], t[i : i + 1], indices=idx[i : i + 1], negatives=keep)["global"]
            / 6
        )
    torch.testing.assert_close(out["global"], manual)
    # Sampled negatives: same masking path, finite gradients.
    sampled = loss(s, t, indices=idx)
    sampled["loss"].backward()
    assert torch.isfinite(sampled["loss"])
    assert loss.teacher_head.linear.parametrizations.weight.original.grad is not None


def test_other_class_anchor_without_valid_negatives_contributes_zero() -> None:
    labels = torch.zeros(30, dtype=torch.long)  # one class: every negative is masked
    loss = _banked_loss(negatives="other_class", sample_labels=labels, estimator="infonce")
    t, s = _features(4, 6, 5, seed=5)
    s.requires_grad_(True)
    out = loss(s, t, indices=torch.arange(4))
    assert float(out["global"].detach()) == 0.0
    out["loss"].backward()
    assert torch.isfinite(s.grad).all()
    for p in loss.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_bad_forward_labels_and_negatives() -> None:
    loss = _banked_loss(negatives="other_class", sample_labels=torch.arange(30) % 2)
    t, s = _features(4, 6, 5)
    for bad in (
        torch.zeros(3, dtype=torch.long),
        torch.zeros(4),
        torch.zeros(4, 1, dtype=torch.long),
    ):
        with pytest.raises(ValueError, match="labels"):
            loss(s, t, indices=torch.arange(4), labels=bad)
    for bad in (
        torch.zeros(3, 5, dtype=torch.long),
        torch.zeros(5),
        torch.zeros(4, 2, 2, dtype=torch.long),
    ):
        with pytest.raises(ValueError, match="negatives"):
            loss(s, t, indices=torch.arange(4), negatives=bad)


def test_sharing_anchor_sampler_and_equal_sets() -> None:
    b = 6
    loss = _banked_loss(sharing="anchor", num_negatives=9)
    idx = torch.tensor([2, 5, 5, 11, 17, 29])
    neg = loss.sample_negatives(idx)
    assert neg.shape == (b, 9) and neg.dtype == torch.long
    assert not torch.isin(neg, idx).any()
    assert not all(torch.equal(neg[0], row) for row in neg[1:])  # independent per anchor
    # Identical loss when every anchor's set equals the shared set, for every critic.
    t, s = _features(b, 6, 5, seed=6)
    shared_set = torch.tensor([0, 1, 3, 8, 9, 20, 21, 25])
    for kind in CRITICS:
        batch_loss = _banked_loss(critic=kind, critic_hidden=8)
        anchor_loss = _banked_loss(critic=kind, critic_hidden=8, sharing="anchor")
        anchor_loss.load_state_dict(batch_loss.state_dict())
        a = batch_loss(s, t, indices=idx, negatives=shared_set)
        z = anchor_loss(s, t, indices=idx, negatives=shared_set.expand(b, -1).clone())
        torch.testing.assert_close(z["global"], a["global"])
        a["loss"].backward(), z["loss"].backward()
        for pa, pz in zip(batch_loss.parameters(), anchor_loss.parameters(), strict=True):
            torch.testing.assert_close(pz.grad, pa.grad, atol=1e-6, rtol=1e-5)


def test_sharing_modes_same_expected_statistics() -> None:
    """Both samplers draw K uniform rows from the same allowed set.

    The mean per-anchor denominator sum_k exp g(u_i, m_k) matches its exact expectation, and the
    mean losses agree.
    """
    b, k = 4, 6
    batch_loss = _banked_loss(num_negatives=k, seed=0).eval()
    anchor_loss = _banked_loss(num_negatives=k, seed=1, sharing="anchor").eval()
    anchor_loss.load_state_dict(batch_loss.state_dict())
    t, s = _features(b, 6, 5, seed=7)
    idx = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        u = batch_loss.teacher_head(t)
        exp_scores = torch.exp(
            batch_loss.critic.against(u, batch_loss.student_bank.memory)
        )  # [B, N]
        expected = exp_scores[:, 4:].mean(1) * k  # uniform over the 26 allowed rows
        for loss in (batch_loss, anchor_loss):
            draws = [loss.sample_negatives(idx) for _ in range(4000)]
            rows = torch.stack([d.expand(b, -1) for d in draws])  # [R, B, K]
            scores = exp_scores.unsqueeze(0).expand(len(draws), -1, -1)
            mean_denominator = scores.gather(2, rows).sum(2).mean(0)
            # ~1% standard error at 4000 draws
            torch.testing.assert_close(mean_denominator, expected, rtol=0.05, atol=0)
        means = [
            sum(float(loss(s, t, indices=idx)["global"]) for _ in range(300)) / 300
            for loss in (batch_loss, anchor_loss)
        ]
    assert means[0] == pytest.approx(means[1], rel=0.02)


# ---------------------------------------------------------------------------- gradient penalty


def _steep_bilinear(boost: float = 4.0, **kwargs) -> WCoRDLoss:
    loss = WCoRDLoss(
        10,
        12,
        num_samples=128,
        embed_dim=8,
        num_negatives=64,
        lambda_local=0.0,
        critic="bilinear",
        **kwargs,
    )
    with torch.no_grad():  # a critic well above the bound 1/tau
        loss.critic.linear.weight.mul_(boost)
        loss.teacher_head.linear.weight.mul_(boost)
    return loss


def _feature_gradient_norms(loss: WCoRDLoss, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``max(|grad_t g(t_i, s_i)|, |grad_s g(t_i, s_i)|)`` per pair, ``[B]``."""
    t, s = t.clone().requires_grad_(True), s.clone().requires_grad_(True)
    score = loss.critic(loss.teacher_head(t), loss.student_head(s))
    grad_t, grad_s = torch.autograd.grad(score.sum(), (t, s))
    return torch.maximum(grad_t.norm(dim=1), grad_s.norm(dim=1))


def test_gradient_penalty_value_and_total() -> None:
    loss = _steep_bilinear(lipschitz="gradient_penalty", gp_weight=3.0, tau=0.1)
    loss.options.lambda_local = 0.5  # also exercise the local term in the total
    t, s = _features(5, 12, 10, seed=8)
    out = loss(s, t, indices=torch.arange(5))
    want = 0.0
    for i in range(5):  # one pair at a time, independent autograd calls
        ti, si = (
            t[i : i + 1].clone().requires_grad_(True),
            s[i : i + 1].clone().requires_grad_(True),
        )
        score = loss.critic(loss.teacher_head(ti), loss.student_head(si))
        gt, gs = torch.autograd.grad(score.sum(), (ti, si))
        want += (
            3.0
            * (max(float(gt.norm()) - 10.0, 0.0) ** 2 + max(float(gs.norm()) - 10.0, 0.0) ** 2)
            / 5
        )
    assert want > 1.0  # the steep critic is penalised
    assert float(out["penalty"].detach()) == pytest.approx(want, rel=1e-4)
    torch.testing.assert_close(
        out["loss"], 0.8 * out["global"] + 0.5 * out["local"] + out["penalty"]
    )
    with torch.no_grad():  # evaluated (detached) for monitoring under no_grad
        assert float(loss(s, t, indices=torch.arange(5))["penalty"]) == pytest.approx(
            want, rel=1e-4
        )
    with torch.inference_mode():
        assert float(loss(s, t, indices=torch.arange(5))["penalty"]) == 0.0


def test_gradient_penalty_zero_within_bound() -> None:
    """Features whose projections are long: |grad g| < 1/tau at every pair.

    So the one-sided penalty is exactly 0 (and it is 0 under the other modes whatever the
    critic).
    """
    loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=8, lipschitz="gradient_penalty")
    t, s = _features(16, 12, 10, seed=9)
    t, s = t * 10, s * 10
    assert _feature_gradient_norms(loss, t, s).max() < 1 / 0.07
    out = loss(s, t, indices=torch.arange(16))
    assert float(out["penalty"].detach()) == 0.0
    torch.testing.assert_close(out["loss"], 0.8 * out["global"] + 0.1 * out["local"])
    for mode in ("none", "spectral"):
        assert (
            float(_steep_bilinear(lipschitz=mode)(s, t, indices=torch.arange(16))["penalty"]) == 0.0
        )


def test_gradient_penalty_trains_heads_and_critic_not_student() -> None:
    loss = _steep_bilinear(lipschitz="gradient_penalty")
    t, s = _features(8, 12, 10, seed=10)
    s.requires_grad_(True)
    penalty = loss(s, t, indices=torch.arange(8))["penalty"]
    assert penalty > 0 and penalty.requires_grad
    params = [
        loss.teacher_head.linear.weight,
        loss.student_head.linear.weight,
        loss.critic.linear.weight,
    ]
    grads = torch.autograd.grad(penalty, [*params, s], allow_unused=True, retain_graph=True)
    for grad in grads[:3]:
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert grads[3] is None  # evaluated at detached features: never moves the student encoder
    # One gradient step on the penalty alone reduces it.
    opt = torch.optim.SGD(params, lr=1e-4)
    loss.zero_grad()
    penalty.backward()
    opt.step()
    assert float(loss(s, t, indices=torch.arange(8))["penalty"].detach()) < float(penalty.detach())


def test_gradient_penalty_keeps_measured_lipschitz_near_bound() -> None:
    """Toy distillation from a steep start, with and without the gradient penalty.

    With the penalty the measured constant at the data's pairs ends within a few percent of
    1/tau; without it, it stays well above.
    """
    n, b, tau = 128, 32, 0.07
    g = _gen(0)
    teacher = torch.randn(n, 12, generator=g)
    student = teacher @ (torch.randn(12, 10, generator=g) / math.sqrt(12)) + torch.randn(
        n, 10, generator=g
    )
    measured = {}
    for mode in ("gradient_penalty", "none"):
        loss = _steep_bilinear(lipschitz=mode, seed=0)
        opt = torch.optim.Adam(loss.parameters(), lr=1e-2)
        order = _gen(1)
        start = float(_feature_gradient_norms(loss, teacher, student).max()) * tau
        for _ in range(150):
            idx = torch.randperm(n, generator=order)[:b]
            out = loss(student[idx], teacher[idx], indices=idx)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            loss.update_memory(idx, out["teacher_embed"], out["student_embed"])
        measured[mode] = float(_feature_gradient_norms(loss, teacher, student).max()) * tau
    assert start > 3.0  # in units of the bound 1/tau
    assert measured["gradient_penalty"] <= 1.15
    assert measured["none"] > 1.5


def test_local_term_with_ipot_solver_matches_exact_transport():
    """With IPOT the local term approaches the exact (assignment) OT cost of the batch."""
    from scipy.optimize import linear_sum_assignment

    torch.manual_seed(0)
    loss = WCoRDLoss(
        teacher_dim=5,
        student_dim=5,
        num_samples=32,
        embed_dim=4,
        lambda_global=0.0,
        lambda_local=1.0,
        local_solver="ipot",
        sinkhorn_iters=500,
        sinkhorn_tol=1e-7,
    )
    u = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    v = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    cost = (1 - u @ v.t()).double().numpy()
    rows, cols = linear_sum_assignment(cost)
    exact = cost[rows, cols].sum() / 8
    assert float(loss.local_term(u, v)) == pytest.approx(exact, rel=1e-3)
    entropic = WCoRDLoss(
        teacher_dim=5,
        student_dim=5,
        num_samples=32,
        embed_dim=4,
        lambda_global=0.0,
        lambda_local=1.0,
        sinkhorn_eps=0.5,
    )
    assert float(entropic.local_term(u, v)) > exact + 1e-3  # a blurred plan costs more
    with pytest.raises(ValueError, match="local_solver"):
        WCoRDLoss(teacher_dim=5, student_dim=5, num_samples=32, local_solver="emd")


# ---------------------------------------------------------------------------- the paper's total


@pytest.mark.parametrize("alpha, beta", [(0.0, 0.0), (1.0, 0.0), (0.0, 0.9), (0.1, 0.9)])
def test_total_objective_alpha_beta_against_hand_computation(alpha: float, beta: float) -> None:
    n, c, b, temperature = 30, 5, 6, 4.0
    g = _gen(3)
    teacher_logits = torch.randn(n, c, generator=g) * 3
    ctx = ObjectiveContext(
        student_dim=7,
        teacher_dim=9,
        num_samples=n,
        num_classes=c,
        seed=1,
        teacher_logits=teacher_logits,
        train_labels=torch.arange(n) % c,
    )
    cfg = WCoRDOptions(embed_dim=8, alpha=alpha, beta=beta)
    method = METHODS.get("wcord")
    objective = method.build(ctx, cfg)
    assert method.hparams_of(cfg)["alpha"] == alpha and method.hparams_of(cfg)["beta"] == beta
    t, s = _features(b, 9, 7, seed=4)
    idx, labels = torch.tensor([0, 4, 9, 13, 22, 29]), torch.tensor([0, 4, 4, 3, 2, 4])
    out = objective(s, t, labels, idx)
    assert (objective.label_terms is None) == (alpha == 0 and beta == 0)
    want = 0.8 * float(out["global"]) + 0.1 * float(out["local"])
    if objective.label_terms is not None:
        w = objective.label_terms.classifier.weight.double()
        bias = objective.label_terms.classifier.bias.double()
        logits = s.double() @ w.t() + bias
        ce = kd = 0.0
        for i in range(b):
            row = [math.exp(x) for x in logits[i].tolist()]
            ce -= math.log(row[labels[i]] / sum(row)) / b
            p_s = [math.exp(x / temperature) for x in logits[i].tolist()]
            p_t = [math.exp(x / temperature) for x in teacher_logits[idx[i]].double().tolist()]
            p_s, p_t = [x / sum(p_s) for x in p_s], [x / sum(p_t) for x in p_t]
            kd += (
                temperature**2
                * sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
                / b
            )
        want += alpha * ce + beta * kd
        if alpha > 0:
            assert float(out["ce"]) == pytest.approx(ce, rel=1e-5)
        if beta > 0:
            assert float(out["kd"]) == pytest.approx(kd, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(want, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="beta"):
        method.build(ObjectiveContext(7, 9, n, c), WCoRDOptions(beta=1.0))  # teacher without logits
    with pytest.raises(ValueError, match="alpha"):
        WCoRDOptions(alpha=-1.0)


# ---------------------------------------------------------------------------- honest solvers


@pytest.mark.parametrize("solver", ["sinkhorn", "ipot"])
def test_unconverged_local_solver_warns_once_and_logs_error(solver: str) -> None:
    loss = WCoRDLoss(
        10,
        12,
        num_samples=64,
        embed_dim=16,
        lambda_global=0.0,
        lambda_local=1.0,
        sinkhorn_eps=1e-3,
        sinkhorn_iters=3,
        local_solver=solver,
        ipot_beta=1e-3,
    )
    t, s = _features(32, 12, 10, seed=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [loss(s * 10, t * 10, indices=torch.arange(32)) for _ in range(3)]
    unconverged = [w for w in caught if issubclass(w.category, TransportNotConverged)]
    assert len(unconverged) == 1 and "marginal error" in str(unconverged[0].message)  # once per run
    relative = loss.last_transport.marginal_error * 32
    assert float(outs[-1]["marginal_error"]) == pytest.approx(relative, rel=1e-6)
    assert relative > 1e-4 and not loss.last_transport.converged
    converged = WCoRDLoss(
        10,
        12,
        num_samples=64,
        embed_dim=16,
        lambda_global=0.0,
        lambda_local=1.0,
        sinkhorn_iters=500,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", TransportNotConverged)  # a converged solve never warns
        out = converged(s, t, indices=torch.arange(32))
    assert (
        float(out["marginal_error"]) <= converged.options.sinkhorn_tol
        and converged.last_transport.converged
    )


def test_local_tolerance_is_relative_to_mass_per_point() -> None:
    """The same relative tolerance gives the same error in units of 1/B at any batch size.

    So the absolute error shrinks with B (an absolute 1e-4 would be 10 % of a point at B = 1024).
    """
    for b in (8, 512):
        loss = WCoRDLoss(
            10,
            12,
            num_samples=2 * b,
            embed_dim=16,
            lambda_global=0.0,
            lambda_local=1.0,
            sinkhorn_eps=0.02,
            sinkhorn_iters=1000,
            sinkhorn_tol=1e-2,
            lipschitz="none",
        )
        t, s = _features(b, 12, 10, seed=b)
        out = loss(s, t, indices=torch.arange(b))
        result = loss.last_transport
        assert result.converged and result.relative_marginal_error < 1e-2
        assert result.marginal_error < 1e-2 / b
        assert float(out["marginal_error"]) == pytest.approx(result.marginal_error * b, rel=1e-6)


# ---------------------------------------------------------------------------- mixed precision


def test_bf16_autocast_keeps_projections_plan_and_terms_in_float32() -> None:
    """runtime.mixed_precision=bf16 on a CPU: the loss stays within bf16's rounding of float32.

    The heads' matmuls may run in bf16, but the ball projection, both terms and the OT plan are
    float32.
    """
    t, s = _features(16, 12, 10, seed=3)
    torch.manual_seed(0)
    reference = WCoRDLoss(10, 12, num_samples=64, embed_dim=16, num_negatives=32)(
        s, t, indices=torch.arange(16)
    )
    torch.manual_seed(0)  # the same heads, banks and negatives
    loss = WCoRDLoss(10, 12, num_samples=64, embed_dim=16, num_negatives=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(s, t, indices=torch.arange(16))
    for name in ("loss", "global", "local"):
        assert out[name].dtype == torch.float32, name
        assert torch.isfinite(out[name])
        assert float(out[name]) == pytest.approx(float(reference[name]), rel=2e-2), name
    assert out["teacher_embed"].dtype == out["student_embed"].dtype == torch.float32
    assert out["student_embed"].norm(dim=1).max() <= 1 + 1e-6  # projected in float32
    assert loss.last_transport.plan.dtype == torch.float32
    torch.testing.assert_close(loss.last_transport.plan.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    out["loss"].backward()  # gradients flow back through the bf16 matmuls
