"""Options travel as one object: a value in the YAML reaches the line that uses it unchanged.

``distill.wcord.sinkhorn_eps`` and ``distill.wcord.tau`` (and ``distill.crd.tau``) are loaded
into the method's options dataclass, put into the training job by the distill stage, handed
by ``train_encoder`` to the objective, which keeps it, and read by the solver WCoRD picked
once and by the critic as that same object, under the YAML's names. Each range is checked
once, when the options are loaded.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from xmodal.core.config import load_config
from xmodal.core.errors import ConfigError
from xmodal.core.registry import METHODS
from xmodal.data.arrays import ArrayDataset
from xmodal.data.source import LoadedDataset
from xmodal.encoders import create_encoder
from xmodal.objectives import transport
from xmodal.objectives.objective import ObjectiveContext
from xmodal.pipelines.config import RunConfig
from xmodal.training.optim import OptimConfig
from xmodal.training.train import TeacherOutputs, TrainJob, TrainSetup, train_encoder

pytestmark = pytest.mark.usefixtures("single_thread")

_YAML = """
distill:
  methods: [wcord, crd]
  wcord: {sinkhorn_eps: 0.0123, tau: 0.0456, embed_dim: 4, num_negatives: 8}
  crd: {tau: 0.0789, embed_dim: 4, num_negatives: 8}
"""


def _config(tmp_path, text: str = _YAML) -> RunConfig:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return load_config(RunConfig, path)


def _dataset(n: int = 32) -> LoadedDataset:
    g = torch.Generator().manual_seed(0)
    train = ArrayDataset(
        {"depth": torch.rand(n, 8, 8, generator=g) + 0.5, "label": torch.arange(n) % 3}
    )
    return LoadedDataset(splits={"train": train}, num_classes=3, class_names=["a", "b", "c"])


def _spy(monkeypatch, name: str) -> list:
    """Record the options object each call of the solver ``name`` receives.

    The solver is the one an objective picks when it is built (:data:`transport.SOLVERS`).
    """
    seen: list = []
    real = transport.SOLVERS[name]

    def spy(cost, options, a=None, b=None):
        seen.append(options)
        return real(cost, options, a=a, b=b)

    monkeypatch.setitem(transport.SOLVERS, name, spy)
    return seen


@pytest.mark.filterwarnings("ignore::xmodal.objectives.sinkhorn.TransportNotConverged")
def test_yaml_sinkhorn_eps_and_tau_reach_solver_and_critic_unchanged(tmp_path, monkeypatch):
    options = _config(tmp_path).distill.options_for("wcord")
    seen = _spy(monkeypatch, "sinkhorn")
    torch.manual_seed(0)
    job = TrainJob(  # as the distill stage builds it
        "wcord",
        options,
        _dataset(),
        seed=0,
        teacher=TeacherOutputs(features=torch.randn(32, 6)),
    )
    result = train_encoder(
        create_encoder("resnet8", "depth"),
        job,
        TrainSetup(OptimConfig(epochs=1, batch_size=8), Accelerator(cpu=True)),
    )
    objective = result.objective
    assert job.options is options
    assert len(seen) == 4  # one solve per step
    assert all(received is options for received in seen)  # the same object, never copied
    assert seen[0].sinkhorn_eps == 0.0123  # the YAML's value, under its name
    assert objective.options is options
    assert objective.critic.options is options and objective.critic.options.tau == 0.0456
    assert objective.teacher_bank.options is options  # the bank reads momentum from it
    u = F.normalize(torch.randn(5, 4), dim=1)
    v = F.normalize(torch.randn(5, 4), dim=1)
    torch.testing.assert_close(objective.critic(u, v), (u * v).sum(-1) / 0.0456, atol=0, rtol=0)


def test_the_distill_stage_puts_the_loaded_options_into_each_training_job(tmp_path, monkeypatch):
    from xmodal.pipelines.stages import distill as stage

    config = _config(tmp_path)
    jobs: list = []
    monkeypatch.setattr(stage, "check_modality", lambda *args: None)
    monkeypatch.setattr(
        stage, "trained_encoder_unit", lambda ctx, parts, job, **where: jobs.append(job)
    )
    state = SimpleNamespace(teachers={0: "teacher outputs"}, dataset="dataset", models=[])
    stage.distill(SimpleNamespace(config=config, state=state))
    assert len(jobs) == 4  # 2 students x 2 methods, one seed
    for job in jobs:  # the one object the config loaded, handed on, never copied
        assert job.options is config.distill.options_for(job.method)
        assert (job.teacher, job.dataset, job.seed) == ("teacher outputs", "dataset", 0)
    assert {job.options.tau for job in jobs} == {0.0456, 0.0789}


def test_yaml_ipot_beta_reaches_ipot_unchanged(tmp_path, monkeypatch):
    text = _YAML.replace("sinkhorn_eps: 0.0123", "local_solver: ipot, ipot_beta: 0.7")
    options = _config(tmp_path, text).distill.options_for("wcord")
    seen = _spy(monkeypatch, "ipot")  # before the objective picks its solver
    context = ObjectiveContext(student_dim=5, teacher_dim=6, num_samples=20, num_classes=3)
    objective = METHODS.get("wcord").build(context, options)
    objective.local_term(
        F.normalize(torch.randn(4, 4), dim=1), F.normalize(torch.randn(4, 4), dim=1)
    )
    assert seen == [options] and seen[0] is options and seen[0].ipot_beta == 0.7


def test_yaml_crd_tau_reaches_crd_unchanged(tmp_path):
    options = _config(tmp_path).distill.options_for("crd")
    context = ObjectiveContext(student_dim=5, teacher_dim=6, num_samples=20, num_classes=3)
    crd = METHODS.get("crd").build(context, options)
    assert crd.options is options and crd.options.tau == 0.0789
    assert crd.teacher_bank.options is options
    with torch.no_grad():  # identity heads: the positive score is <t, s> / tau, nothing else
        for head in (crd.teacher_head, crd.student_head):
            head.linear.weight.zero_()
            head.linear.weight[:, :4] = torch.eye(4)
            head.linear.bias.zero_()
    t = torch.zeros(2, 6)
    s = torch.zeros(2, 5)
    t[:, 0] = s[:, 0] = 1.0  # unit vectors, <u, v> = 1
    negatives = torch.tensor([5, 6, 7])
    out = crd(s, t, torch.zeros(2, dtype=torch.long), torch.tensor([0, 1]), negatives=negatives)
    assert float(crd.z_teacher) > 0  # Z estimated from scores exp(<u, m> / 0.0789)
    want = torch.cat(
        [
            torch.full((2, 1), 1 / 0.0789),
            t[:, :4] @ crd.student_bank.memory[negatives].t() / 0.0789,
        ],
        1,
    )
    z = float(want.exp().mean()) * 20
    assert float(crd.z_teacher) == pytest.approx(z, rel=1e-5)
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("distill.wcord.momentum=1.0", "momentum=1.0 (must be in [0, 1))"),
        ("distill.crd.momentum=1.0", "momentum=1.0 (must be in [0, 1))"),
        ("distill.wcord.sinkhorn_tol=-0.001", "sinkhorn_tol=-0.001 (must be a finite number >= 0)"),
        ("distill.wcord.sinkhorn_eps=0", "sinkhorn_eps=0.0 (must be a finite number > 0)"),
        ("distill.wcord.tau=0", "tau=0.0 (must be a finite number > 0)"),
    ],
)
def test_each_range_is_checked_once_at_load(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(RunConfig, overrides=[override])


def test_range_boundaries_that_hold() -> None:
    """``sinkhorn_tol = 0`` runs every iteration; ``momentum = 0`` overwrites the rows."""
    cfg = load_config(
        RunConfig, overrides=["distill.wcord.sinkhorn_tol=0", "distill.wcord.momentum=0"]
    )
    options = cfg.distill.options_for("wcord")
    assert options.sinkhorn_tol == 0.0 and options.momentum == 0.0
    result = transport.solve_transport(torch.rand(6, 6), options)
    assert result.iterations == options.sinkhorn_iters and not result.converged
