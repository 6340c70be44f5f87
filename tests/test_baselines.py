"""Baselines (kd, fitnet, crd, rkd, pkt, infonce).

Hand computations, known limits, toy training, configs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xmodal.objectives.baselines  # noqa: F401  (registers the methods)
from xmodal.core.registry import METHODS
from xmodal.objectives.baselines import (
    CRDObjective,
    CRDOptions,
    FitNetObjective,
    FitNetOptions,
    InfoNCEOptions,
    KDObjective,
    KDOptions,
    PKTObjective,
    PKTOptions,
    RKDObjective,
    RKDOptions,
    nce_loss,
    pkt_loss,
    rkd_angle,
    rkd_distance,
)
from xmodal.objectives.objective import Objective, ObjectiveContext

NAMES = ("kd", "fitnet", "crd", "rkd", "pkt", "infonce")
CONFIGS = {
    "kd": KDOptions,
    "fitnet": FitNetOptions,
    "crd": CRDOptions,
    "rkd": RKDOptions,
    "pkt": PKTOptions,
    "infonce": InfoNCEOptions,
}


pytestmark = pytest.mark.usefixtures("single_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _no_labels(b: int) -> torch.Tensor:
    return torch.full((b,), -1, dtype=torch.long)


def _random_rotation(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=_gen(seed), dtype=torch.float64))
    return q


# ---------------------------------------------------------------------------- configs and registry


def test_config_defaults_follow_the_papers() -> None:
    assert dataclasses.asdict(KDOptions()) == dict(temperature=4.0, alpha=0.0, beta=1.0)
    assert dataclasses.asdict(FitNetOptions()) == dict(weight=1.0)
    assert dataclasses.asdict(CRDOptions()) == dict(
        embed_dim=128,
        num_negatives=16384,
        tau=0.07,
        momentum=0.5,
        weight=0.8,
        negatives="uniform",
        sharing="batch",
        replacement=False,
        alpha=0.0,
        bank_dtype="float32",
    )
    assert dataclasses.asdict(RKDOptions()) == dict(distance_weight=25.0, angle_weight=50.0)
    assert dataclasses.asdict(PKTOptions()) == dict(weight=1.0)
    assert dataclasses.asdict(InfoNCEOptions()) == dict(
        embed_dim=128,
        init_temperature=0.07,
        max_logit_scale=100.0,
        learn_temperature=True,
        weight=1.0,
    )


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (KDOptions, dict(temperature=0.0), "temperature"),
        (KDOptions, dict(temperature=float("inf")), "temperature"),
        (KDOptions, dict(alpha=-0.1), "alpha"),
        (KDOptions, dict(beta=float("nan")), "beta"),
        (KDOptions, dict(alpha=0.0, beta=0.0), "beta"),
        (KDOptions, dict(temperature="4"), "temperature"),
        (FitNetOptions, dict(weight=0.0), "weight"),
        (FitNetOptions, dict(weight=-1.0), "weight"),
        (FitNetOptions, dict(weight=True), "weight"),
        (CRDOptions, dict(embed_dim=0), "embed_dim"),
        (CRDOptions, dict(negatives="hard"), "negatives"),
        (CRDOptions, dict(sharing="pair"), "sharing"),
        (CRDOptions, dict(replacement="yes"), "replacement"),
        (CRDOptions, dict(embed_dim=12.0), "embed_dim"),
        (CRDOptions, dict(num_negatives=0), "num_negatives"),
        (CRDOptions, dict(tau=0.0), "tau"),
        (CRDOptions, dict(momentum=1.0), "momentum"),
        (CRDOptions, dict(momentum=-0.1), "momentum"),
        (CRDOptions, dict(weight=0.0), "weight"),
        (RKDOptions, dict(distance_weight=-1.0), "distance_weight"),
        (RKDOptions, dict(angle_weight=float("nan")), "angle_weight"),
        (RKDOptions, dict(distance_weight=0.0, angle_weight=0.0), "angle_weight"),
        (PKTOptions, dict(weight=0.0), "weight"),
        (PKTOptions, dict(weight=float("inf")), "weight"),
    ],
)
def test_configs_reject_bad_values_naming_the_field(cls, kwargs, field) -> None:
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


def test_registered_with_config_keys_and_hparams() -> None:
    ctx = ObjectiveContext(
        student_dim=6,
        teacher_dim=5,
        num_samples=40,
        num_classes=3,
        seed=1,
        teacher_logits=torch.randn(40, 3, generator=_gen(0)),
    )
    for name in NAMES:
        method = METHODS.get(name)
        cfg = CONFIGS[name]()
        assert issubclass(method, Objective) and method.trains and method.options is CONFIGS[name]
        assert "labels" not in method.needs_for(cfg)  # kd reads labels only with alpha > 0
        assert METHODS.options_key(name) == name
        assert method.hparams_of(cfg) == dataclasses.asdict(cfg)
        objective = method.build(ctx, cfg)
        out = objective(torch.randn(8, 6), torch.randn(8, 5), _no_labels(8), torch.arange(8))
        assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
        assert all(v.ndim == 0 for k, v in out.items() if not k.endswith("_embed"))
        assert ("teacher_embed" in out) == (name == "crd")  # only crd keeps a memory to update


def test_kd_build_needs_teacher_logits_in_the_right_shape() -> None:
    kd = METHODS.get("kd")
    with pytest.raises(ValueError, match="teacher's logits"):
        kd.build(ObjectiveContext(4, 5, 10, 3), KDOptions())
    with pytest.raises(ValueError, match="rows"):
        kd.build(ObjectiveContext(4, 5, 10, 3, teacher_logits=torch.zeros(9, 3)), KDOptions())
    # a teacher with 7 classes of its own: KD through a head of 7, CE through one of the dataset's 3
    both = kd.build(
        ObjectiveContext(4, 5, 10, 3, teacher_logits=torch.zeros(10, 7)), KDOptions(alpha=1.0)
    )
    assert (both.kd_head.out_features, both.classifier.out_features) == (7, 3)


def test_autocast_keeps_losses_float32_and_finite() -> None:
    ctx = ObjectiveContext(
        student_dim=6,
        teacher_dim=5,
        num_samples=40,
        num_classes=3,
        teacher_logits=torch.randn(40, 3, generator=_gen(0)),
    )
    student, teacher = torch.randn(8, 6, generator=_gen(1)), torch.randn(8, 5, generator=_gen(2))
    for name in NAMES:
        objective = METHODS.get(name).build(ctx, CONFIGS[name]())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = objective(student, teacher, _no_labels(8), torch.arange(8))
        assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"]), name


# ---------------------------------------------------------------------------- KD


def test_kd_is_zero_when_the_classifier_reproduces_the_teacher() -> None:
    g = _gen(3)
    weight, bias = torch.randn(4, 6, generator=g), torch.randn(4, generator=g)
    student = torch.randn(10, 6, generator=g)
    teacher_logits = student @ weight.t() + bias
    kd = KDObjective(6, teacher_logits, KDOptions(temperature=4.0))
    with torch.no_grad():
        kd.classifier.weight.copy_(weight)
        kd.classifier.bias.copy_(bias)
    out = kd(student, None, _no_labels(10), torch.arange(10))
    assert abs(out["loss"].item()) < 1e-5
    assert out["agreement"].item() == 1.0


def test_kd_matches_a_hand_computation() -> None:
    temperature = 2.0
    teacher_logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    student_logits = [[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]]
    # classifier = identity on 3-d features: student logits = features
    kd = KDObjective(3, teacher_logits, KDOptions(temperature=temperature, beta=1.0))
    with torch.no_grad():
        kd.classifier.weight.copy_(torch.eye(3))
        kd.classifier.bias.zero_()

    def softmax(row):
        e = [math.exp(x / temperature) for x in row]
        return [x / sum(e) for x in e]

    total = 0.0
    for t_row, s_row in zip(teacher_logits.tolist(), student_logits, strict=True):
        p, q = softmax(t_row), softmax(s_row)
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = temperature**2 * total / 2
    out = kd(torch.tensor(student_logits), None, _no_labels(2), torch.tensor([0, 1]))
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["kd"].item() == pytest.approx(expected, rel=1e-5)
    assert "ce" not in out  # alpha = 0: labels are never read

    # indices select the teacher rows; alpha > 0 adds the cross-entropy on labels
    kd2 = KDObjective(
        3, teacher_logits.flip(0), KDOptions(temperature=temperature, alpha=0.5, beta=2.0)
    )
    kd2.load_state_dict(kd.state_dict())
    labels = torch.tensor([1, 2])
    ce = (
        sum(
            -math.log(math.exp(s[y]) / sum(math.exp(x) for x in s))
            for s, y in zip(student_logits, labels.tolist(), strict=True)
        )
        / 2
    )
    out2 = kd2(torch.tensor(student_logits), None, labels, torch.tensor([1, 0]))
    assert out2["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out2["loss"].item() == pytest.approx(2.0 * expected + 0.5 * ce, rel=1e-5)


# ---------------------------------------------------------------------------- FitNet


def test_fitnet_matches_hand_mse_and_is_zero_for_an_exact_connector() -> None:
    fit = FitNetObjective(2, 3, FitNetOptions(weight=2.0))
    with torch.no_grad():
        fit.connector.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        fit.connector.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    student = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    teacher = torch.tensor([[1.0, 3.0, 3.0], [0.0, 0.0, -1.0]])  # exactly W s + b
    exact = fit(student, teacher, _no_labels(2), torch.arange(2))
    assert exact["loss"].item() == pytest.approx(0.0, abs=1e-7)
    teacher2 = torch.tensor([[0.0, 3.0, 1.0], [1.0, 0.0, -1.0]])
    # residuals (1, 0, 2) and (-1, 0, 0): sum of squares 6 over 6 entries -> mse 1, loss 2
    out = fit(student, teacher2, _no_labels(2), torch.arange(2))
    assert out["mse"].item() == pytest.approx(1.0)
    assert out["loss"].item() == pytest.approx(2.0)


# ---------------------------------------------------------------------------- RKD


def _hand_rkd(student: list[list[float]], teacher: list[list[float]]) -> tuple[float, float]:
    """Distance and angle terms by explicit loops over pairs and triplets."""

    def sub(a, b):
        return [x - y for x, y in zip(a, b, strict=True)]

    def norm(a):
        return math.sqrt(sum(x * x for x in a))

    def huber(x):
        return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5

    n = len(student)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]

    def psi_d(x):
        d = {(i, j): norm(sub(x[i], x[j])) for i, j in pairs}
        mu = sum(d.values()) / len(d)
        return {k: v / mu for k, v in d.items()}

    ds, dt = psi_d(student), psi_d(teacher)
    distance = sum(huber(ds[p] - dt[p]) for p in pairs) / len(pairs)

    def psi_a(x, i, j, k):
        e1, e2 = sub(x[i], x[j]), sub(x[k], x[j])
        return sum(a * b for a, b in zip(e1, e2, strict=True)) / (norm(e1) * norm(e2))

    triplets = [t for t in itertools.permutations(range(n), 3)]
    angle = sum(huber(psi_a(student, *t) - psi_a(teacher, *t)) for t in triplets) / len(triplets)
    return distance, angle


def test_rkd_matches_hand_computation() -> None:
    student = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0]]
    teacher = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [5.0, 1.0, -1.0]]
    distance, angle = _hand_rkd(student, teacher)
    s, t = torch.tensor(student), torch.tensor(teacher)
    assert float(rkd_distance(s, t)) == pytest.approx(distance, rel=1e-5)
    assert float(rkd_angle(s, t)) == pytest.approx(angle, rel=1e-5)
    rkd = RKDObjective(RKDOptions(distance_weight=25.0, angle_weight=50.0))
    out = rkd(s, t, _no_labels(4), torch.arange(4))
    assert out["loss"].item() == pytest.approx(25 * distance + 50 * angle, rel=1e-5)


def test_rkd_is_zero_for_equal_features_and_invariant_to_similarity_transforms() -> None:
    g = _gen(4)
    student, teacher = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    rkd = RKDObjective()
    args = (_no_labels(12), torch.arange(12))
    assert float(rkd(teacher, teacher, *args)["loss"]) == pytest.approx(0.0, abs=1e-5)
    assert float(
        rkd(3.0 * teacher @ _random_rotation(6, 0).float() + 2.0, teacher, *args)["loss"]
    ) == pytest.approx(0.0, abs=1e-4)
    base = rkd(student, teacher, *args)
    assert base["loss"].item() > 0.1
    q = _random_rotation(6, 1).float()
    common = rkd(0.5 * student @ q, 0.5 * teacher @ q, *args)  # common rotation and scaling
    separate = rkd(
        7.0 * student @ _random_rotation(6, 2).float() - 1.0,
        0.2 * teacher @ _random_rotation(6, 3).float() + 5.0,
        *args,
    )
    for out in (common, separate):
        for key in ("distance", "angle", "loss"):
            assert float(out[key]) == pytest.approx(float(base[key]), rel=1e-4, abs=1e-6), key


def test_rkd_compares_features_of_different_sizes_and_small_batches() -> None:
    g = _gen(5)
    student = torch.randn(6, 3, generator=g, requires_grad=True)
    out = RKDObjective()(student, torch.randn(6, 10, generator=g), _no_labels(6), torch.arange(6))
    out["loss"].backward()
    assert (
        student.grad is not None
        and torch.isfinite(student.grad).all()
        and student.grad.abs().sum() > 0
    )
    one = torch.randn(1, 3, requires_grad=True)
    out1 = RKDObjective()(one, torch.randn(1, 10), _no_labels(1), torch.arange(1))
    assert out1["loss"].item() == 0.0
    out1["loss"].backward()  # stays connected to the student: the loop can always step
    duplicate = torch.zeros(4, 3, requires_grad=True)  # all student points coincide
    out2 = RKDObjective()(
        duplicate, torch.randn(4, 10, generator=g), _no_labels(4), torch.arange(4)
    )
    out2["loss"].backward()
    assert torch.isfinite(out2["loss"]) and torch.isfinite(duplicate.grad).all()


# ---------------------------------------------------------------------------- PKT


def _hand_pkt(student: list[list[float]], teacher: list[list[float]]) -> float:
    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b)
        )

    def conditional(x):
        n = len(x)
        out = []
        for i in range(n):
            k = {j: (cos(x[i], x[j]) + 1) / 2 for j in range(n) if j != i}
            out.append({j: v / sum(k.values()) for j, v in k.items()})
        return out

    q, p = conditional(teacher), conditional(student)
    return sum(
        sum(q[i][j] * math.log(q[i][j] / p[i][j]) for j in q[i]) for i in range(len(q))
    ) / len(q)


def test_pkt_matches_hand_computation_on_three_points() -> None:
    student = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    teacher = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 3.0]]
    expected = _hand_pkt(student, teacher)
    assert expected > 0.01
    assert float(pkt_loss(torch.tensor(student), torch.tensor(teacher))) == pytest.approx(
        expected, rel=1e-4
    )
    out = PKTObjective(PKTOptions(weight=3.0))(
        torch.tensor(student), torch.tensor(teacher), _no_labels(3), torch.arange(3)
    )
    assert out["loss"].item() == pytest.approx(3 * expected, rel=1e-4)


def test_pkt_is_zero_for_equal_features_and_positive_otherwise() -> None:
    g = _gen(6)
    teacher, student = torch.randn(10, 5, generator=g), torch.randn(10, 5, generator=g)
    args = (_no_labels(10), torch.arange(10))
    pkt = PKTObjective()
    assert float(pkt(teacher, teacher, *args)["loss"]) == pytest.approx(0.0, abs=1e-6)
    scale = torch.rand(10, 1, generator=g) + 0.5  # cosine kernel: per-sample scale is irrelevant
    assert float(pkt(teacher * scale, teacher, *args)["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(pkt(student, teacher, *args)["loss"]) > 1e-3


# ---------------------------------------------------------------------------- CRD


def _crd(n=50, dt=5, ds=4, d=3, k=16384, tau=0.5, momentum=0.5, weight=0.8, seed=0) -> CRDObjective:
    return CRDObjective(
        ds,
        dt,
        n,
        CRDOptions(embed_dim=d, num_negatives=k, tau=tau, momentum=momentum, weight=weight),
        seed=seed,
    )


def _identity_heads(crd: CRDObjective) -> None:
    with torch.no_grad():
        for head in (crd.teacher_head, crd.student_head):
            head.linear.weight.copy_(torch.eye(*head.linear.weight.shape))
            head.linear.bias.zero_()


def test_crd_estimates_z_once_from_the_first_batch() -> None:
    n, tau = 50, 0.5
    crd = _crd(n=n, tau=tau)
    assert not crd.z_estimated and float(crd.z_teacher) == -1.0
    g = _gen(7)
    student, teacher = torch.randn(6, 4, generator=g), torch.randn(6, 5, generator=g)
    indices, negatives = torch.arange(6), torch.arange(10, 30)
    out = crd(student, teacher, _no_labels(6), indices, negatives=negatives)
    u, v = out["teacher_embed"], out["student_embed"]
    pos = (u * v).sum(1, keepdim=True) / tau
    scores_t = torch.cat([pos, u @ crd.student_bank.memory[negatives].t() / tau], 1)
    scores_s = torch.cat([pos, v @ crd.teacher_bank.memory[negatives].t() / tau], 1)
    assert float(crd.z_teacher) == pytest.approx(float(scores_t.exp().mean()) * n, rel=1e-5)
    assert float(crd.z_student) == pytest.approx(float(scores_s.exp().mean()) * n, rel=1e-5)
    z = (crd.z_teacher.clone(), crd.z_student.clone())
    assert {"z_teacher", "z_student"} <= set(crd.state_dict())  # checkpointed with the banks
    for _step in range(3):  # later batches, bank updates and sampled negatives leave Z unchanged
        crd.update_memory(indices, u, v)
        indices = torch.randperm(n, generator=g)[:8]
        out = crd(
            5 * torch.randn(8, 4, generator=g),
            torch.randn(8, 5, generator=g),
            _no_labels(8),
            indices,
        )
        u, v = out["teacher_embed"], out["student_embed"]
        assert torch.equal(crd.z_teacher, z[0]) and torch.equal(crd.z_student, z[1])
    restored = _crd(n=n, tau=tau)
    restored.load_state_dict(crd.state_dict())
    assert restored.z_estimated and torch.equal(restored.z_teacher, z[0])


def test_crd_perfect_positive_beats_a_random_positive() -> None:
    crd = _crd(n=200, dt=8, ds=8, d=8, tau=0.1)
    _identity_heads(crd)
    g = _gen(8)
    teacher = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    indices = torch.arange(16)
    crd(torch.randn(16, 8, generator=g), teacher, _no_labels(16), indices)  # fixes Z
    negatives = torch.arange(16, 200)
    perfect = crd(teacher, teacher, _no_labels(16), indices, negatives=negatives)  # u = v
    random_ = crd(
        torch.randn(16, 8, generator=g), teacher, _no_labels(16), indices, negatives=negatives
    )
    assert torch.allclose(perfect["teacher_embed"], perfect["student_embed"])
    assert perfect["loss"].item() < random_["loss"].item() - 1.0
    assert perfect["nce_teacher_anchor"].item() < random_["nce_teacher_anchor"].item()
    assert perfect["nce_student_anchor"].item() < random_["nce_student_anchor"].item()


def test_crd_equals_a_per_anchor_loop() -> None:
    n, tau, weight = 40, 0.3, 0.8
    crd = _crd(n=n, dt=5, ds=4, d=3, tau=tau, weight=weight)
    g = _gen(9)
    with torch.no_grad():  # fixed, arbitrary banks and Z
        crd.teacher_bank.memory.copy_(F.normalize(torch.randn(n, 3, generator=g), dim=1))
        crd.student_bank.memory.copy_(F.normalize(torch.randn(n, 3, generator=g), dim=1))
        crd.z_teacher.fill_(37.0)
        crd.z_student.fill_(55.0)
    student, teacher = torch.randn(5, 4, generator=g), torch.randn(5, 5, generator=g)
    indices = torch.tensor([3, 9, 0, 21, 17])
    negatives = torch.tensor([1, 4, 30, 12, 39, 7, 25])
    out = crd(student, teacher, _no_labels(5), indices, negatives=negatives)

    # independent computation: heads by hand, probabilities by explicit exp / Z, loops over anchors
    def embed(head, x):
        z = x @ head.linear.weight.detach().t() + head.linear.bias.detach()
        return (z / z.norm(dim=1, keepdim=True)).tolist()

    u, v = embed(crd.teacher_head, teacher), embed(crd.student_head, student)
    mem_t, mem_s = crd.teacher_bank.memory.tolist(), crd.student_bank.memory.tolist()
    k, c = len(negatives), len(negatives) / n

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    def direction(anchors, partners, bank, z):
        total = 0.0
        for i, anchor in enumerate(anchors):
            p_pos = math.exp(dot(anchor, partners[i]) / tau) / z
            loss = -math.log(p_pos / (p_pos + c))
            for j in negatives.tolist():
                p_neg = math.exp(dot(anchor, bank[j]) / tau) / z
                loss -= math.log(c / (p_neg + c))
            total += loss
        return total / len(anchors)

    loss_t = direction(u, v, mem_s, 37.0)  # teacher anchors against the student bank
    loss_s = direction(v, u, mem_t, 55.0)  # student anchors against the teacher bank
    assert k == 7
    assert out["nce_teacher_anchor"].item() == pytest.approx(loss_t, rel=1e-5)
    assert out["nce_student_anchor"].item() == pytest.approx(loss_s, rel=1e-5)
    assert out["loss"].item() == pytest.approx(weight * (loss_t + loss_s), rel=1e-5)


def test_crd_negatives_and_memory_update() -> None:
    crd = _crd(n=30, k=100)
    assert crd.num_negatives_effective == 29
    indices = torch.tensor([2, 5, 5, 7])
    negatives = crd.sample_negatives(indices)
    assert negatives.numel() == 27 and len(set(negatives.tolist())) == 27
    assert not set(negatives.tolist()) & {2, 5, 7}
    g = _gen(10)
    out = crd(
        torch.randn(4, 4, generator=g), torch.randn(4, 5, generator=g), _no_labels(4), indices
    )
    assert out["teacher_embed"].shape == (4, 3) and not out["teacher_embed"].requires_grad
    before = crd.student_bank.memory.clone()
    crd.update_memory(torch.tensor([0, 1]), out["teacher_embed"][:2], out["student_embed"][:2])
    expected = F.normalize(0.5 * before[:2] + 0.5 * out["student_embed"][:2], dim=1)
    assert torch.allclose(crd.student_bank.memory[:2], expected, atol=1e-6)
    assert torch.equal(crd.student_bank.memory[2:], before[2:])
    with pytest.raises(ValueError, match="no negatives"):
        _crd(n=4)(torch.randn(4, 4), torch.randn(4, 5), _no_labels(4), torch.arange(4))


@pytest.mark.parametrize("negatives", ["uniform", "other_class"])
@pytest.mark.parametrize("sharing", ["batch", "anchor"])
@pytest.mark.parametrize("replacement", [False, True])
def test_crd_sampler_modes(negatives: str, sharing: str, replacement: bool) -> None:
    """RepDistiller's CIFAR sampler is other_class + anchor + without replacement.

    No negative shares the anchor's class (shared sets are masked instead), and no row repeats
    when asked.
    """
    n, classes = 60, 4
    labels = torch.arange(n) % classes
    cfg = CRDOptions(
        embed_dim=3,
        num_negatives=50,
        tau=0.5,
        negatives=negatives,
        sharing=sharing,
        replacement=replacement,
    )
    crd = CRDObjective(4, 5, n, cfg, seed=0, sample_labels=labels)
    indices = torch.tensor([0, 5, 6, 11, 13])
    sets = [crd.sample_negatives(indices) for _ in range(5)]
    for drawn in sets:
        if sharing == "batch" or negatives == "uniform":
            assert not torch.isin(drawn, indices).any()  # the batch's rows are excluded
        rows = drawn.reshape(-1 if sharing == "batch" else 5, drawn.shape[-1])
        if sharing == "anchor" and negatives == "other_class":
            # 45 rows of other classes per anchor: K = 50 with replacement, capped at 45 without.
            assert drawn.shape == (5, 50 if replacement else 45)
            assert (labels[drawn] != labels[indices].unsqueeze(1)).all()  # no same-class negative
        else:
            assert drawn.shape[-1] == 50 and (sharing == "batch") == (drawn.dim() == 1)
        if not replacement:
            assert all(row.unique().numel() == row.numel() for row in rows)
    if replacement:  # 50 draws among 45-55 rows: a repeat within one set is all but certain
        assert any(
            row.unique().numel() < row.numel() for drawn in sets for row in drawn.reshape(-1, 50)
        )
    g = _gen(12)
    out = crd(
        torch.randn(5, 4, generator=g), torch.randn(5, 5, generator=g), _no_labels(5), indices
    )
    assert torch.isfinite(out["loss"]) and crd.z_estimated and torch.isfinite(crd.z_teacher)


def test_crd_shared_other_class_masks_same_class_negatives() -> None:
    """A masked negative's NCE term is 0.

    The loss equals that of the other-class rows alone (with the noise constant K/N of the K
    rows drawn).
    """
    n, labels = 40, torch.arange(40) % 2
    cfg = CRDOptions(embed_dim=3, tau=0.3, negatives="other_class")
    crd = CRDObjective(4, 5, n, cfg, seed=0, sample_labels=labels)
    plain = CRDObjective(4, 5, n, CRDOptions(embed_dim=3, tau=0.3), seed=0)
    for obj in (crd, plain):
        obj.z_teacher.fill_(30.0)
        obj.z_student.fill_(40.0)
    g = _gen(13)
    student, teacher = torch.randn(1, 4, generator=g), torch.randn(1, 5, generator=g)
    index = torch.tensor([2])  # class 0
    mixed = torch.tensor([1, 3, 4, 5, 8, 9])  # classes 1, 1, 0, 1, 0, 1
    out = crd(student, teacher, _no_labels(1), index, negatives=mixed)
    odd = torch.tensor([1, 3, 5, 9])
    ref = plain(student, teacher, _no_labels(1), index, negatives=odd)
    # Same K/N noise constant: rescale the reference's log(K/N) by replacing K=4 with K=6.
    u, v = ref["teacher_embed"], ref["student_embed"]
    log_noise = math.log(6 / n)
    pos = (u * v).sum(1) / 0.3
    negative = u @ plain.student_bank.memory[odd].t() / 0.3
    want_t = nce_loss(pos - math.log(30.0), negative - math.log(30.0), log_noise)
    assert out["nce_teacher_anchor"].item() == pytest.approx(want_t.item(), rel=1e-5)
    with pytest.raises(ValueError, match="sample_labels"):
        CRDObjective(4, 5, n, cfg)


def test_crd_alpha_adds_cross_entropy_of_its_classifier() -> None:
    g = _gen(14)
    student, teacher = torch.randn(6, 4, generator=g), torch.randn(6, 5, generator=g)
    labels = torch.arange(6) % 3
    plain = CRDObjective(4, 5, 30, CRDOptions(embed_dim=3), seed=0)
    with_ce = CRDObjective(4, 5, 30, CRDOptions(embed_dim=3, alpha=0.5), seed=0, num_classes=3)
    assert plain.classifier is None and with_ce.classifier.out_features == 3
    negatives = torch.arange(10, 30)
    a = plain(student, teacher, labels, torch.arange(6), negatives=negatives)
    b = with_ce(student, teacher, labels, torch.arange(6), negatives=negatives)
    ce = F.cross_entropy(with_ce.classifier(student), labels)
    assert b["loss"].item() == pytest.approx(a["loss"].item() + 0.5 * ce.item(), rel=1e-5)
    with pytest.raises(ValueError, match="num_classes"):
        CRDObjective(4, 5, 30, CRDOptions(alpha=1.0))


# ---------------------------------------------------------------------------- toy distillation


def _toy(n=256, dt=12, dx=10, c=4, seed=11):
    """Teacher features T, student inputs X = T A + noise, teacher logits T W.

    X is a fixed linear map of the teacher plus noise; W is a linear teacher classifier.
    """
    g = _gen(seed)
    teacher = torch.randn(n, dt, generator=g)
    teacher = (teacher - teacher.mean(0)) / teacher.std(0)
    inputs = teacher @ torch.randn(dt, dx, generator=g) + 0.1 * torch.randn(n, dx, generator=g)
    logits = 2.0 * teacher @ torch.randn(dt, c, generator=g)
    return teacher, inputs, logits


@pytest.mark.parametrize("name", NAMES)
def test_every_baseline_trains_a_linear_student(name) -> None:
    teacher, inputs, logits = _toy()
    n, ds = teacher.shape[0], 8
    torch.manual_seed(0)
    student = nn.Linear(inputs.shape[1], ds)
    cfg = {"crd": CRDOptions(embed_dim=16)}.get(name, CONFIGS[name]())
    ctx = ObjectiveContext(
        student_dim=ds,
        teacher_dim=teacher.shape[1],
        num_samples=n,
        num_classes=4,
        seed=0,
        teacher_logits=logits,
    )
    objective = METHODS.get(name).build(ctx, cfg)
    optimiser = torch.optim.Adam(list(student.parameters()) + list(objective.parameters()), lr=1e-2)
    g = _gen(12)
    losses = []
    for _ in range(100):
        idx = torch.randperm(n, generator=g)[:64]
        out = objective(student(inputs[idx]), teacher[idx], _no_labels(64), idx)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        if "teacher_embed" in out:
            objective.update_memory(idx, out["teacher_embed"], out["student_embed"])
        losses.append(out["loss"].item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert all(math.isfinite(x) for x in losses)
    assert last < 0.7 * first, (name, first, last)


@pytest.mark.parametrize("name", NAMES)
def test_baselines_run_in_the_training_loop(name) -> None:
    from accelerate import Accelerator

    from xmodal.data.arrays import ArrayDataset, make_loader
    from xmodal.encoders import create_encoder
    from xmodal.training.loop import fit
    from xmodal.training.optim import OptimConfig
    from xmodal.training.task import DistillationTask

    n = 32
    g = _gen(13)
    data = ArrayDataset(
        {
            "depth": torch.rand(n, 8, 8, generator=g) * 4 + 0.5,
            "label": torch.randint(0, 3, (n,), generator=g),
        }
    )
    torch.manual_seed(0)
    encoder = create_encoder("resnet8", "depth")
    ctx = ObjectiveContext(
        student_dim=encoder.embed_dim,
        teacher_dim=6,
        num_samples=n,
        num_classes=3,
        teacher_logits=torch.randn(n, 3, generator=g),
    )
    cfg = {"crd": CRDOptions(embed_dim=8)}.get(name, CONFIGS[name]())
    objective = METHODS.get(name).build(ctx, cfg)
    task = DistillationTask(encoder, objective, teacher_features=torch.randn(n, 6, generator=g))
    banks = [b.memory.clone() for b in (getattr(objective, "teacher_bank", None),) if b is not None]
    history = fit(task, make_loader(data, 8, True), OptimConfig(epochs=1), Accelerator(cpu=True))
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    if banks:  # after_step wrote the gathered batches into the banks
        assert not torch.equal(banks[0], objective.teacher_bank.memory)
