"""InfoNCE (ImageBind/CLIP): loss and gradients against a float64 reference.

Also the temperature's clamp and freezing, validation, seeding, and the global batch under two
real processes.
"""

from __future__ import annotations

import dataclasses
import math
import socket

import pytest
import torch

import xmodal.objectives.baselines  # noqa: F401  (registers the methods)
from xmodal.core.registry import METHODS
from xmodal.objectives.baselines import InfoNCEObjective, InfoNCEOptions
from xmodal.objectives.objective import ObjectiveContext

pytestmark = pytest.mark.usefixtures("single_thread")

DT, DS, D = 5, 4, 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(b, DS, generator=g), torch.randn(b, DT, generator=g)


def _run(
    objective: InfoNCEObjective, student: torch.Tensor, teacher: torch.Tensor
) -> dict[str, torch.Tensor]:
    b = student.shape[0]
    return objective(student, teacher, torch.full((b,), -1, dtype=torch.long), torch.arange(b))


def _reference(
    student, teacher, params: dict[str, torch.Tensor], log_scale, max_logit_scale, weight
):
    """The loss by hand in float64.

    Linear maps, division by the norm, exp of the clamped log-scale, log-softmax as
    ``x - max - log(sum(exp(x - max)))`` along rows and columns.
    """

    def embed(x, w, b):
        z = x @ w.t() + b
        return z / z.square().sum(1, keepdim=True).sqrt()

    def log_softmax_rows(x):
        top = x.max(1, keepdim=True).values.detach()
        return x - top - (x - top).exp().sum(1, keepdim=True).log()

    u = embed(teacher, params["teacher_w"], params["teacher_b"])
    v = embed(student, params["student_w"], params["student_b"])
    s = torch.minimum(
        torch.maximum(log_scale, log_scale.new_tensor(0.0)),
        log_scale.new_tensor(math.log(max_logit_scale)),
    )
    logits = torch.exp(s) * (u @ v.t())
    n = logits.shape[0]
    rows = -sum(log_softmax_rows(logits)[i, i] for i in range(n)) / n
    cols = -sum(log_softmax_rows(logits.t())[i, i] for i in range(n)) / n
    return weight * (rows + cols) / 2


def _reference_leaves(objective: InfoNCEObjective, student: torch.Tensor, teacher: torch.Tensor):
    as64 = lambda t: t.detach().double().clone().requires_grad_()  # noqa: E731
    params = {
        "teacher_w": as64(objective.teacher_head.linear.weight),
        "teacher_b": as64(objective.teacher_head.linear.bias),
        "student_w": as64(objective.student_head.linear.weight),
        "student_b": as64(objective.student_head.linear.bias),
    }
    return params, as64(objective.logit_scale), as64(student), teacher.double()


# ---------------------------------------------------------------------------- options and registry


def test_defaults_follow_clip_and_the_method_is_registered() -> None:
    assert dataclasses.asdict(InfoNCEOptions()) == dict(
        embed_dim=128,
        init_temperature=0.07,
        max_logit_scale=100.0,
        learn_temperature=True,
        weight=1.0,
    )
    method = METHODS.get("infonce")
    assert method is InfoNCEObjective and method.options is InfoNCEOptions and method.trains
    assert method.needs_for(InfoNCEOptions()) == frozenset({"teacher"})
    objective = method.build(
        ObjectiveContext(DS, DT, 40, 3, seed=0, batch_size=8), InfoNCEOptions()
    )
    assert (
        isinstance(objective.logit_scale, torch.nn.Parameter) and objective.logit_scale.shape == ()
    )
    assert objective.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    out = _run(objective, *_batch())
    assert set(out) == {
        "loss",
        "infonce",
        "temperature",
    }  # no memory: nothing to gather after a step
    assert out["temperature"].item() == pytest.approx(0.07, rel=1e-6)
    assert all(v.shape == () and v.dtype == torch.float32 for v in out.values())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(embed_dim=0), "embed_dim"),
        (dict(embed_dim=12.0), "embed_dim"),
        (dict(embed_dim=True), "embed_dim"),
        (dict(init_temperature=0.0), "init_temperature"),
        (dict(init_temperature=-0.1), "init_temperature"),
        (dict(init_temperature=float("nan")), "init_temperature"),
        (dict(init_temperature=2.0), "init_temperature"),  # above 1: the scale's lower clamp
        (dict(init_temperature=0.005), "init_temperature"),  # below 1/100: the upper clamp
        (dict(max_logit_scale=0.0), "max_logit_scale"),
        (dict(max_logit_scale=float("inf")), "max_logit_scale"),
        (dict(max_logit_scale=0.5, init_temperature=1.0), "max_logit_scale"),
        (dict(learn_temperature="yes"), "learn_temperature"),
        (dict(weight=0.0), "weight"),
        (dict(weight=-1.0), "weight"),
    ],
)
def test_bad_options_raise_naming_the_field(kwargs, field) -> None:
    with pytest.raises(ValueError, match=field):
        InfoNCEOptions(**kwargs)


def test_build_and_constructor_reject_what_cannot_run() -> None:
    method = METHODS.get("infonce")
    with pytest.raises(ValueError, match="teacher"):
        method.build(ObjectiveContext(DS, None, 40, 3), InfoNCEOptions())
    with pytest.raises(ValueError, match="batch_size"):
        method.build(ObjectiveContext(DS, DT, 40, 3, batch_size=1), InfoNCEOptions())
    for kwargs in (dict(teacher_dim=0), dict(student_dim=2.0), dict(seed=-1)):
        args = {"teacher_dim": DT, "student_dim": DS, **kwargs}
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            InfoNCEObjective(**args)


@pytest.mark.parametrize(
    ("student", "teacher"),
    [
        (torch.randn(6), torch.randn(6, DT)),
        (torch.randn(6, DS), torch.randn(6, DT, 1)),
        (torch.randn(6, DS), torch.randn(5, DT)),
        (torch.randn(6, DS + 1), torch.randn(6, DT)),
        (torch.randn(6, DS), torch.randn(6, DT - 1)),
        (torch.randn(0, DS), torch.randn(0, DT)),
    ],
)
def test_bad_shapes_raise_one_clear_error(student, teacher) -> None:
    objective = InfoNCEObjective(DS, DT, InfoNCEOptions(embed_dim=D))
    with pytest.raises(
        ValueError, match=r"InfoNCEObjective: need student \[B, 4\] and teacher \[B, 5\]"
    ):
        objective(student, teacher, None, torch.arange(student.shape[0]))
    with pytest.raises(ValueError, match="needs teacher features"):
        objective(torch.randn(6, DS), None, None, torch.arange(6))


# ---------------------------------------------------------------------------- loss and gradients


@pytest.mark.parametrize(("temperature", "weight"), [(0.07, 1.0), (0.5, 0.3)])
def test_loss_and_every_gradient_match_a_float64_reference(temperature, weight) -> None:
    objective = InfoNCEObjective(
        DS, DT, InfoNCEOptions(embed_dim=D, init_temperature=temperature, weight=weight), seed=2
    )
    student, teacher = _batch(seed=3)
    student.requires_grad_(True)
    out = _run(objective, student, teacher)
    out["loss"].backward()

    params, log_scale, student64, teacher64 = _reference_leaves(objective, student, teacher)
    expected = _reference(student64, teacher64, params, log_scale, 100.0, weight)
    expected.backward()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-6)
    assert out["infonce"].item() == pytest.approx(expected.item() / weight, rel=1e-6, abs=1e-6)
    assert out["temperature"].item() == pytest.approx(temperature, rel=1e-6)
    pairs = [(student.grad, student64.grad), (objective.logit_scale.grad, log_scale.grad)]
    pairs += [
        (objective.teacher_head.linear.weight.grad, params["teacher_w"].grad),
        (objective.teacher_head.linear.bias.grad, params["teacher_b"].grad),
        (objective.student_head.linear.weight.grad, params["student_w"].grad),
        (objective.student_head.linear.bias.grad, params["student_b"].grad),
    ]
    for got, want in pairs:
        assert want.abs().max() > 1e-4  # every reference gradient is non-trivial
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


def test_matched_pairs_score_lower_than_shuffled_ones() -> None:
    objective = InfoNCEObjective(DT, DT, InfoNCEOptions(embed_dim=DT))
    with torch.no_grad():  # identical heads: u_i = v_i
        objective.student_head.linear.load_state_dict(objective.teacher_head.linear.state_dict())
    teacher = torch.randn(16, DT, generator=_gen(4))
    matched = _run(objective, teacher, teacher)["loss"].item()
    shuffled = _run(objective, teacher.flip(0), teacher)["loss"].item()
    assert matched < math.log(16) < shuffled


# ---------------------------------------------------------------------------- temperature


def test_the_scale_is_clamped_at_max_logit_scale_with_zero_gradient_past_it() -> None:
    objective = InfoNCEObjective(DS, DT, InfoNCEOptions(embed_dim=D), seed=1)
    student, teacher = _batch(seed=5)
    with torch.no_grad():
        objective.logit_scale.fill_(math.log(100.0))
    at_bound = _run(objective, student, teacher)
    at_bound["loss"].backward()
    assert objective.logit_scale.grad.abs().item() > 1e-6  # the bound itself still learns
    for past in (math.log(100.0) + 0.5, math.log(100.0) + 3.0):
        objective.zero_grad()
        with torch.no_grad():
            objective.logit_scale.fill_(past)
        out = _run(objective, student, teacher)
        out["loss"].backward()
        assert out["temperature"].item() == pytest.approx(0.01, rel=1e-6)
        assert out["loss"].item() == pytest.approx(at_bound["loss"].item(), rel=1e-6)
        assert objective.logit_scale.grad.item() == 0.0
    objective.zero_grad()
    with torch.no_grad():
        objective.logit_scale.fill_(-0.4)  # below 0: temperature 1
    out = _run(objective, student, teacher)
    out["loss"].backward()
    assert (
        out["temperature"].item() == pytest.approx(1.0) and objective.logit_scale.grad.item() == 0.0
    )


def test_a_fixed_temperature_is_a_buffer_that_training_leaves_alone() -> None:
    objective = InfoNCEObjective(
        DS, DT, InfoNCEOptions(embed_dim=D, init_temperature=0.2, learn_temperature=False)
    )
    assert "logit_scale" not in dict(objective.named_parameters())
    assert "logit_scale" in objective.state_dict() and not objective.logit_scale.requires_grad
    optimiser = torch.optim.SGD(objective.parameters(), lr=0.5)
    student, teacher = _batch(seed=6)
    for _ in range(3):
        out = _run(objective, student, teacher)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        assert objective.logit_scale.grad is None
        assert out["temperature"].item() == pytest.approx(0.2, rel=1e-6)
    assert objective.logit_scale.item() == pytest.approx(math.log(5.0))


def test_a_learned_temperature_moves() -> None:
    objective = InfoNCEObjective(DS, DT, InfoNCEOptions(embed_dim=D))
    optimiser = torch.optim.SGD(objective.parameters(), lr=0.5)
    before = objective.logit_scale.item()
    out = _run(objective, *_batch(seed=7))
    out["loss"].backward()
    optimiser.step()
    assert objective.logit_scale.item() != before


# ---------------------------------------------------------------------------- seeding


def test_seeded_heads_are_reproducible_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = (InfoNCEObjective(DS, DT, InfoNCEOptions(embed_dim=D), seed=4) for _ in range(2))
    c = InfoNCEObjective(DS, DT, InfoNCEOptions(embed_dim=D), seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (key, x), y, z in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), key
        if key != "logit_scale":
            assert not torch.equal(x, z), key
    student, teacher = _batch(seed=8)
    assert torch.equal(_run(a, student, teacher)["loss"], _run(b, student, teacher)["loss"])


# ---------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_process_worker(rank: int, world: int, port: int, out: str) -> None:
    """This rank's half of a fixed batch: its loss and its raw gradients."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        student, teacher = _batch(b=8, seed=9)
        rows = slice(rank * 4, (rank + 1) * 4)
        local = student[rows].clone().requires_grad_()
        objective = InfoNCEObjective(DS, DT, InfoNCEOptions(embed_dim=D), seed=2)
        loss = _run(objective, local, teacher[rows])["loss"]
        loss.backward()
        grads = {name: p.grad for name, p in objective.named_parameters()}
        torch.save(
            {"loss": loss.detach(), "student": local.grad, "params": grads}, f"{out}/rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_train_on_the_global_batch(tmp_path) -> None:
    """Each rank's 4 anchors against all 8 candidates agree with one process.

    The ranks' mean loss is the one-process loss of the 8 pairs; after DDP's mean over ranks,
    every parameter's gradient is the one-process gradient; a rank's raw feature gradient is 2x
    (see xmodal.objectives.gather).
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_two_process_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    student, teacher = _batch(b=8, seed=9)
    student.requires_grad_(True)
    objective = InfoNCEObjective(DS, DT, InfoNCEOptions(embed_dim=D), seed=2)
    loss = _run(objective, student, teacher)["loss"]
    loss.backward()
    torch.testing.assert_close(
        (ranks[0]["loss"] + ranks[1]["loss"]) / 2, loss.detach(), rtol=1e-6, atol=1e-6
    )
    for name, p in objective.named_parameters():
        mean = (ranks[0]["params"][name] + ranks[1]["params"][name]) / 2
        torch.testing.assert_close(mean, p.grad, rtol=1e-5, atol=1e-6)
    for r in range(2):
        torch.testing.assert_close(
            ranks[r]["student"], 2 * student.grad[r * 4 : (r + 1) * 4], rtol=1e-5, atol=1e-6
        )
