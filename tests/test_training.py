"""Training layer: divergence errors, memory update after the step, schedule, resumable state."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from xmodal.data.arrays import ArrayDataset, make_loader
from xmodal.encoders import create_encoder
from xmodal.objectives.supervised import Supervised
from xmodal.objectives.wcord import WCoRDLoss
from xmodal.training.loop import TrainingDiverged, fit
from xmodal.training.optim import OptimConfig, build_optimizer, build_schedule
from xmodal.training.task import DistillationTask
from xmodal.training.train import standardise_features


def _dataset(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(
        {
            "depth": torch.rand(n, 8, 8, generator=g) * 4 + 0.5,
            "label": torch.randint(0, 3, (n,), generator=g),
        }
    )


class _NaNObjective(nn.Module):
    def forward(self, student, teacher, labels, indices):
        return {"loss": student.sum() * float("nan")}


def test_nan_loss_names_epoch_and_step():
    task = DistillationTask(create_encoder("resnet8", "depth"), _NaNObjective())
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1; lower the learning rate"):
        fit(task, make_loader(_dataset(), 8, True), OptimConfig(epochs=1), Accelerator(cpu=True))


class _EchoAccelerator:
    device = torch.device("cpu")

    def gather(self, tensor):
        return tensor


def test_after_step_writes_the_batch_into_both_banks():
    torch.manual_seed(0)
    loss = WCoRDLoss(
        teacher_dim=6, student_dim=64, num_samples=32, embed_dim=4, num_negatives=8, momentum=0.5
    )
    task = DistillationTask(
        create_encoder("resnet8", "depth"), loss, teacher_features=torch.randn(32, 6)
    )
    batch = _dataset().__getitems__([3, 7, 11])
    before_t = loss.teacher_bank.memory.clone()
    out = task(batch)
    task.after_step(out, batch, _EchoAccelerator())
    mixed = 0.5 * before_t[[3, 7, 11]] + 0.5 * out["teacher_embed"]  # Lipschitz heads: unit ball
    expected = mixed / mixed.norm(dim=1, keepdim=True).clamp_min(1.0)
    assert torch.allclose(loss.teacher_bank.memory[[3, 7, 11]], expected, atol=1e-6)
    untouched = [i for i in range(32) if i not in (3, 7, 11)]
    assert torch.equal(loss.teacher_bank.memory[untouched], before_t[untouched])


def test_standardise_features():
    x = (
        torch.rand(100, 5, dtype=torch.float64)
        * torch.tensor([1.0, 10, 100, 0.1, 3], dtype=torch.float64)
        + 7
    )
    z = standardise_features(x)
    assert torch.allclose(z.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(z.std(0), torch.ones(5, dtype=torch.float64), atol=1e-9)


def _learning_rates(cfg: OptimConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every step of ``cfg``'s schedule."""
    opt = build_optimizer([nn.Parameter(torch.zeros(1))], cfg)
    sched = build_schedule(opt, cfg, steps_per_epoch=steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_multistep_schedule_decays_at_milestones():
    cfg = OptimConfig(
        epochs=6,
        lr=0.05,
        warmup_epochs=0,
        schedule="multistep",
        milestones=[2, 4],
        lr_decay=0.1,
        optimizer="sgd",
        nesterov=False,
    )
    assert build_optimizer([nn.Parameter(torch.zeros(1))], cfg).param_groups[0]["nesterov"] is False
    lrs = _learning_rates(cfg, steps_per_epoch=3)
    assert lrs == pytest.approx([0.05] * 6 + [0.005] * 6 + [0.0005] * 6)
    with pytest.raises(ValueError, match="milestones"):
        OptimConfig(milestones=[5, 3])


def test_schedule_warms_up_then_decays_to_zero():
    cfg = OptimConfig(epochs=4, lr=1.0, warmup_epochs=1.0)
    lrs = _learning_rates(cfg, steps_per_epoch=10)
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0  # warm-up
    assert max(lrs) == pytest.approx(1.0, abs=0.01)
    # consecutive pairs: the shifted copy is one shorter on purpose
    assert lrs[-1] < 0.01 and all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_history_json_is_plain(tmp_path):
    task = DistillationTask(create_encoder("resnet8", "depth"), Supervised(64, 3))
    history = fit(
        task, make_loader(_dataset(), 8, True), OptimConfig(epochs=2), Accelerator(cpu=True)
    )
    assert [h["epoch"] for h in history] == [1, 2]
    assert all({"spread_rank", "spread_cosine"} <= h.keys() for h in history)
    json.dumps(history)


@pytest.mark.parametrize("method", ["wcord", "crd"])
def test_a_batch_holding_every_sample_fails_before_training_with_the_fix(method):
    from xmodal.core.registry import METHODS
    from xmodal.objectives.objective import ObjectiveContext
    from xmodal.pipelines.config import DistillConfig

    entry = METHODS.get(method)
    cfg = DistillConfig().options_for(method)
    ctx = ObjectiveContext(
        student_dim=8, teacher_dim=8, num_samples=26, num_classes=3, batch_size=26
    )
    with pytest.raises(ValueError, match="lower distill.optim.batch_size"):
        entry.build(ctx, cfg)
    ctx.batch_size = 25  # one sample left outside the batch: a negative exists
    assert entry.build(ctx, cfg) is not None


def _wcord_task(seed=0, n=32):
    from xmodal.core.registry import METHODS
    from xmodal.objectives.objective import ObjectiveContext
    from xmodal.objectives.wcord import WCoRDOptions

    torch.manual_seed(seed)
    encoder = create_encoder("resnet8", "depth")
    teacher = torch.randn(n, 16, generator=torch.Generator().manual_seed(99))
    ctx = ObjectiveContext(
        student_dim=encoder.embed_dim,
        teacher_dim=16,
        num_samples=n,
        num_classes=3,
        seed=seed,
        batch_size=8,
    )
    objective = METHODS.get("wcord").build(ctx, WCoRDOptions(num_negatives=8, momentum=0.5))
    return DistillationTask(encoder, objective, teacher)


def test_logging_the_spread_changes_no_weight_bank_or_loss_of_wcord(monkeypatch):
    from xmodal.training import loop

    cfg = OptimConfig(epochs=2, batch_size=8)
    logged = _wcord_task()
    history = fit(
        logged, make_loader(_dataset(), 8, True, seed=5, drop_last=True), cfg, Accelerator(cpu=True)
    )
    monkeypatch.setattr(loop, "student_spread", lambda *args, **kwargs: {})
    plain = _wcord_task()
    plain_history = fit(
        plain, make_loader(_dataset(), 8, True, seed=5, drop_last=True), cfg, Accelerator(cpu=True)
    )
    _assert_same_state(logged, plain)  # weights, BN statistics and both memory banks
    assert [
        {k: v for k, v in h.items() if not k.startswith("spread_")} for h in history
    ] == plain_history


def test_training_killed_after_an_epoch_resumes_to_identical_weights(tmp_path, monkeypatch):
    from xmodal.training import loop

    cfg = OptimConfig(epochs=3, batch_size=8)
    whole = _wcord_task()
    fit(whole, make_loader(_dataset(), 8, True, seed=5, drop_last=True), cfg, Accelerator(cpu=True))

    state = tmp_path / "train-state.pt"
    real_save = loop.save_train_state

    def save_then_die(path, key, epoch, *args, **kwargs):
        real_save(path, key, epoch, *args, **kwargs)
        if epoch == 2:
            raise KeyboardInterrupt  # killed after epoch 2 was saved

    monkeypatch.setattr(loop, "save_train_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(
            _wcord_task(),
            make_loader(_dataset(), 8, True, seed=5, drop_last=True),
            cfg,
            Accelerator(cpu=True),
            state_path=state,
            state_key="k",
        )
    monkeypatch.setattr(loop, "save_train_state", real_save)
    torch.manual_seed(1234)  # a fresh process: nothing but the state file carries over
    resumed = _wcord_task()
    history = fit(
        resumed,
        make_loader(_dataset(), 8, True, seed=5, drop_last=True),
        cfg,
        Accelerator(cpu=True),
        state_path=state,
        state_key="k",
    )
    assert [h["epoch"] for h in history] == [1, 2, 3]
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for name in a:  # weights, BN statistics and both memory banks, bit for bit
        assert torch.equal(a[name], b[name]), name


def test_a_state_from_other_inputs_is_not_resumed(tmp_path):
    cfg = OptimConfig(epochs=1, batch_size=8)
    state = tmp_path / "train-state.pt"
    fit(
        _wcord_task(),
        make_loader(_dataset(), 8, True, drop_last=True),
        cfg,
        Accelerator(cpu=True),
        state_path=state,
        state_key="old",
    )
    task = _wcord_task(seed=3)
    before = {k: v.clone() for k, v in task.state_dict().items()}
    history = fit(
        task,
        make_loader(_dataset(), 8, True, drop_last=True),
        cfg,
        Accelerator(cpu=True),
        state_path=state,
        state_key="new",
    )
    assert len(history) == 1  # trained, not skipped as "already done"
    assert any(not torch.equal(before[k], v) for k, v in task.state_dict().items())
    state.write_bytes(b"torn")  # unreadable: start over rather than fail
    assert (
        len(
            fit(
                _wcord_task(),
                make_loader(_dataset(), 8, True, drop_last=True),
                cfg,
                Accelerator(cpu=True),
                state_path=state,
                state_key="new",
            )
        )
        == 1
    )


def _train_uninterrupted(cfg, loader_seed=5):
    whole = _wcord_task()
    fit(
        whole,
        make_loader(_dataset(), 8, True, seed=loader_seed, drop_last=True),
        cfg,
        Accelerator(cpu=True),
    )
    return whole


def _assert_same_state(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for name in a:  # weights, BN statistics and both memory banks, bit for bit
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("kill_at", [2, 6])  # inside epoch 1; inside epoch 2, after an epoch save
def test_training_killed_mid_epoch_resumes_to_identical_weights(tmp_path, monkeypatch, kill_at):
    """A fresh task resumes mid-epoch after a kill and ends bit-identical.

    checkpoint_every=2 with 4 steps per epoch; the kill comes after the state at global step
    ``kill_at`` was written.
    """
    from xmodal.training import loop

    cfg = OptimConfig(epochs=3, batch_size=8)
    whole = _train_uninterrupted(cfg)
    state = tmp_path / "train-state.pt"
    real_save = loop.save_train_state
    saved = []

    def save_then_die(path, key, epoch, *args, step=0, **kwargs):
        real_save(path, key, epoch, *args, step=step, **kwargs)
        saved.append(epoch * 4 + step)
        if saved[-1] == kill_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_train_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(
            _wcord_task(),
            make_loader(_dataset(), 8, True, seed=5, drop_last=True),
            cfg,
            Accelerator(cpu=True),
            state_path=state,
            state_key="k",
            checkpoint_every=2,
        )
    monkeypatch.setattr(loop, "save_train_state", real_save)
    assert torch.load(state, weights_only=False)["step"] == 2  # a mid-epoch state
    torch.manual_seed(4321)  # a fresh process: nothing but the state file carries over
    resumed = _wcord_task()
    history = fit(
        resumed,
        make_loader(_dataset(), 8, True, seed=5, drop_last=True),
        cfg,
        Accelerator(cpu=True),
        state_path=state,
        state_key="k",
        checkpoint_every=2,
    )
    assert [h["epoch"] for h in history] == [1, 2, 3]
    _assert_same_state(whole, resumed)


def test_a_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """The write of the step-4 state dies half-way: the step-2 state is intact.

    Resuming from it still ends bit-identical to an uninterrupted run.
    """
    from xmodal.training import loop

    cfg = OptimConfig(epochs=2, batch_size=8)
    whole = _train_uninterrupted(cfg)
    state = tmp_path / "train-state.pt"
    real_torch_save = torch.save
    writes = []

    def torn_save(obj, path):
        writes.append(path)
        if len(writes) == 2:  # the second checkpoint: half a file, then the process dies
            with open(path, "wb") as f:
                f.write(b"\x80\x02half")
            raise KeyboardInterrupt
        real_torch_save(obj, path)

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        fit(
            _wcord_task(),
            make_loader(_dataset(), 8, True, seed=5, drop_last=True),
            cfg,
            Accelerator(cpu=True),
            state_path=state,
            state_key="k",
            checkpoint_every=2,
        )
    monkeypatch.setattr(torch, "save", real_torch_save)
    assert loop.read_train_state(state, "k")["step"] == 2  # the previous state, whole
    assert [p.name for p in tmp_path.iterdir()] == ["train-state.pt"]  # no temp file left
    resumed = _wcord_task()
    fit(
        resumed,
        make_loader(_dataset(), 8, True, seed=5, drop_last=True),
        cfg,
        Accelerator(cpu=True),
        state_path=state,
        state_key="k",
        checkpoint_every=2,
    )
    _assert_same_state(whole, resumed)
