"""Embedding spread: effective rank and mean pairwise cosine, logged per epoch by ``fit``."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from xmodal.data.arrays import ArrayDataset, make_loader
from xmodal.encoders import create_encoder
from xmodal.objectives.supervised import Supervised
from xmodal.training import loop
from xmodal.training.loop import fit
from xmodal.training.optim import OptimConfig
from xmodal.training.spread import (
    COSINE_KEY,
    RANK_KEY,
    effective_rank,
    mean_pairwise_cosine,
    spread_probe,
    student_spread,
)
from xmodal.training.task import DistillationTask


def _reference_rank(x: np.ndarray) -> float:
    """Roy & Vetterli's effective rank, written out independently with numpy."""
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _with_singular_values(
    values: list[float], n: int = 40, d: int = 12, seed: int = 0
) -> np.ndarray:
    """A centred ``[n, d]`` matrix whose singular values are ``values`` (then zeros)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    u = u[:, 1:] - u[:, 1:].mean(0)  # columns orthogonal to the all-ones vector stay centred
    u, _ = np.linalg.qr(u)
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    k = len(values)
    return u[:, :k] @ np.diag(values) @ v[:, :k].T


def test_rank_one_matrix_has_effective_rank_one():
    x = np.outer(np.arange(10.0), [1.0, -2.0, 0.5]) + 3.0  # points on a line, off the origin
    assert effective_rank(x) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_k_equal_directions_have_effective_rank_k(k):
    assert effective_rank(_with_singular_values([2.5] * k)) == pytest.approx(k, rel=1e-9)


def test_effective_rank_matches_an_svd_written_in_numpy():
    rng = np.random.default_rng(1)
    for x in (
        _with_singular_values([9.0, 3.0, 1.0, 0.1]),
        rng.standard_normal((30, 8)) * np.linspace(0.1, 4, 8) + 2,
        rng.standard_normal((5, 20)),
    ):  # N < D: at most N - 1 after centring
        assert effective_rank(x) == pytest.approx(_reference_rank(x), rel=1e-12)
        assert effective_rank(torch.as_tensor(x, dtype=torch.float32)) == pytest.approx(
            _reference_rank(x.astype(np.float32).astype(np.float64)), rel=1e-5
        )
    assert effective_rank(rng.standard_normal((5, 20))) <= 4 + 1e-9


def test_coincident_points_have_effective_rank_zero():
    assert effective_rank(np.ones((6, 4))) == 0.0


def test_mean_cosine_matches_a_double_loop():
    x = np.random.default_rng(2).standard_normal((9, 5)) + 0.4
    x[3] = 0.0  # a zero row: cosine 0 with every other row, its pairs still count
    pairs = []
    for i, j in itertools.permutations(range(len(x)), 2):
        ni, nj = np.linalg.norm(x[i]), np.linalg.norm(x[j])
        pairs.append(0.0 if ni == 0 or nj == 0 else x[i] @ x[j] / (ni * nj))
    assert mean_pairwise_cosine(x) == pytest.approx(np.mean(pairs), rel=1e-12)
    assert mean_pairwise_cosine(torch.as_tensor(x)) == pytest.approx(np.mean(pairs), rel=1e-12)


def test_a_cone_is_narrower_and_lower_rank_than_isotropic_features():
    g = torch.Generator().manual_seed(3)
    isotropic = torch.randn(256, 64, generator=g)
    direction = torch.nn.functional.normalize(torch.randn(64, generator=g), dim=0)
    cone = (
        4 * direction + 0.5 * torch.randn(256, 3, generator=g) @ torch.randn(3, 64, generator=g) / 8
    )
    assert abs(mean_pairwise_cosine(isotropic)) < 0.02
    assert mean_pairwise_cosine(cone) > 0.9
    assert mean_pairwise_cosine(torch.ones(4, 3)) == pytest.approx(1.0)
    assert effective_rank(isotropic) > 40
    assert effective_rank(cone) < 3 + 1e-6
    assert mean_pairwise_cosine(torch.cat([direction[None], -direction[None]])) == pytest.approx(-1)


@pytest.mark.parametrize("fn", [effective_rank, mean_pairwise_cosine])
def test_bad_inputs_name_what_is_wrong(fn):
    with pytest.raises(ValueError, match=r"at least 2 rows.*\(1, 4\)"):
        fn(torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"feature matrix \[N, D\]; got shape \(8,\)"):
        fn(torch.ones(8))
    with pytest.raises(ValueError, match="1 of the 12 entries are NaN or inf"):
        fn(torch.tensor([[1.0, 2.0, 3.0]] * 3 + [[1.0, math.inf, 0.0]]))


# ----------------------------------------------------------------------------- in training


def _dataset(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(
        {
            "depth": torch.rand(n, 8, 8, generator=g) * 4 + 0.5,
            "label": torch.randint(0, 3, (n,), generator=g),
        }
    )


def _train(epochs=2, hflip=True):
    torch.manual_seed(0)
    task = DistillationTask(create_encoder("resnet8", "depth"), Supervised(64, 3), hflip=hflip)
    history = fit(
        task,
        make_loader(_dataset(), 8, True, seed=5, drop_last=True),
        OptimConfig(epochs=epochs),
        Accelerator(cpu=True),
    )
    return task, history


def test_every_epoch_logs_the_students_spread_and_training_is_unchanged(monkeypatch):
    task, history = _train()
    assert [h["epoch"] for h in history] == [1, 2]
    for entry in history:
        assert 1.0 <= entry[RANK_KEY] <= 64 and -1.0 <= entry[COSINE_KEY] <= 1.0
    json.dumps(history)
    # the logged values are those of the final student on the first training samples
    probe = spread_probe(_dataset(), "depth")
    assert student_spread(task.student, probe, "cpu") == pytest.approx(
        {k: history[-1][k] for k in (RANK_KEY, COSINE_KEY)}, rel=1e-6
    )
    assert task.student.training  # the probe restored train mode

    monkeypatch.setattr(loop, "student_spread", lambda *args, **kwargs: {})
    without, history_without = _train()
    a, b = task.state_dict(), without.state_dict()
    assert a.keys() == b.keys()
    for name in a:  # weights and BatchNorm statistics, bit for bit
        assert torch.equal(a[name], b[name]), name
    for logged, plain in zip(history, history_without, strict=True):
        assert {k: v for k, v in logged.items() if k not in (RANK_KEY, COSINE_KEY)} == plain


def test_the_probe_leaves_the_random_state_and_batchnorm_statistics_alone():
    torch.manual_seed(7)
    encoder = create_encoder("resnet8", "depth").train()
    before_rng = torch.get_rng_state()
    before_state = {k: v.clone() for k, v in encoder.state_dict().items()}
    probe = spread_probe(_dataset(300), "depth")
    assert len(probe) == 256  # the first 256 rows only
    spread = student_spread(encoder, probe, "cpu", batch_size=100)
    assert set(spread) == {RANK_KEY, COSINE_KEY}
    assert torch.equal(torch.get_rng_state(), before_rng)
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, before_state[name]), name
    assert encoder.training
    # chunked reads give the same features as one batch
    assert student_spread(encoder, probe, "cpu", batch_size=256) == pytest.approx(spread, rel=1e-5)


def test_no_probe_for_a_dataset_that_cannot_be_read_by_column():
    assert spread_probe(list(range(10)), "depth") is None
    assert spread_probe(_dataset(1), "depth") is None  # one row: no pair
    assert spread_probe(_dataset(4), "audio") is None
