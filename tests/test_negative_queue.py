"""The FIFO queue of negatives (``negatives=queue``) and 16-bit bank storage."""

from __future__ import annotations

import math
import re
from collections import deque

import pytest
import torch

from xmodal.core.config import load_config
from xmodal.core.errors import ConfigError
from xmodal.objectives.baselines.crd import CRDObjective, CRDOptions
from xmodal.objectives.memory_bank import MemoryBank
from xmodal.objectives.memory_options import MemoryOptions
from xmodal.objectives.negative_queue import NegativeQueue
from xmodal.objectives.wcord import WCoRDLoss
from xmodal.pipelines.config import RunConfig


def test_queue_keeps_the_last_k_in_order_like_a_deque():
    queue = NegativeQueue(5, MemoryOptions(embed_dim=2), seed=0)
    start = queue.memory.clone()
    reference = deque([(-1, tuple(row.tolist())) for row in start], maxlen=5)
    counter = 0
    for count in (2, 3, 1, 7, 4):  # 7 > size: only its last 5 stay
        ids = torch.arange(counter, counter + count)
        rows = torch.stack([torch.tensor([float(i), -float(i)]) for i in ids])
        counter += count
        queue.enqueue(ids, rows)
        reference.extend((int(i), tuple(r.tolist())) for i, r in zip(ids, rows, strict=False))
        held = {(int(i), tuple(r.tolist())) for i, r in zip(queue.ids, queue.memory, strict=False)}
        assert held == set(reference)
    assert int(queue.position) == counter % 5


def test_queue_state_dict_round_trip_continues_the_same_queue():
    a = NegativeQueue(4, MemoryOptions(embed_dim=3), seed=1)
    a.enqueue(torch.tensor([7, 8, 9]), torch.randn(3, 3))
    b = NegativeQueue(4, MemoryOptions(embed_dim=3), seed=2)
    b.load_state_dict(a.state_dict())
    batch = (torch.tensor([1, 2]), torch.randn(2, 3))
    a.enqueue(*batch)
    b.enqueue(*batch)
    assert torch.equal(a.memory, b.memory) and torch.equal(a.ids, b.ids)


@pytest.mark.parametrize(
    "bad",
    [
        (torch.tensor([1, 2]), torch.randn(3, 4)),
        (torch.tensor([1]), torch.full((1, 4), float("nan"))),
        (torch.tensor([[1]]), torch.randn(1, 4)),
    ],
)
def test_queue_refuses_bad_batches(bad):
    with pytest.raises(ValueError, match="NegativeQueue.enqueue"):
        NegativeQueue(4, MemoryOptions(embed_dim=4)).enqueue(*bad)


@pytest.mark.parametrize("estimator", ["infonce", "nce"])
def test_wcord_queue_term_equals_a_hand_computation_with_own_entries_masked(estimator):
    torch.manual_seed(0)
    loss = WCoRDLoss(
        5,
        6,
        num_samples=50,
        embed_dim=4,
        num_negatives=6,
        tau=0.1,
        lipschitz="none",
        lambda_local=0.0,
        negatives="queue",
        estimator=estimator,
    )
    teacher, student = torch.randn(3, 6), torch.randn(3, 5)
    loss.update_memory(torch.tensor([3, 11, 12]), torch.randn(3, 4), torch.randn(3, 4))
    indices = torch.tensor([3, 4, 5])  # sample 3 has an older embedding in the queue
    out = loss(student, teacher, indices=indices)
    u, v = out["teacher_embed"], out["student_embed"]
    mem_t, mem_s, ids = loss.teacher_bank.memory, loss.student_bank.memory, loss.teacher_bank.ids
    sides = [[], []]  # per side: (positive score, kept negative scores) per anchor
    for i in range(3):
        keep = ids != indices[i]
        pos = float(u[i] @ v[i]) / 0.1
        for side, negs in enumerate(((mem_s[keep] @ u[i]) / 0.1, (mem_t[keep] @ v[i]) / 0.1)):
            sides[side].append((pos, negs.double().tolist()))
    expected = 0.0
    for rows in sides:
        if estimator == "infonce":
            expected += (
                sum(math.log(math.exp(p) + sum(math.exp(x) for x in ns)) - p for p, ns in rows) / 3
            )
            continue
        z = (
            50
            * sum(math.exp(p) + sum(math.exp(x) for x in ns) for p, ns in rows)
            / sum(1 + len(ns) for _, ns in rows)
        )
        c = 6 / 50  # K (the queue's length, masked entries counted as in CRD) / N
        for p, ns in rows:
            expected -= (
                math.log((math.exp(p) / z) / (math.exp(p) / z + c))
                + sum(math.log(c / (math.exp(x) / z + c)) for x in ns)
            ) / 3
    assert int((ids == 3).sum()) == 1
    torch.testing.assert_close(out["global"], torch.as_tensor(expected, dtype=torch.float32))


def test_crd_queue_scores_every_entry_but_the_anchors_own():
    cfg = CRDOptions(embed_dim=4, num_negatives=6, negatives="queue")
    crd = CRDObjective(5, 5, num_samples=40, options=cfg)
    crd.update_memory(torch.tensor([0, 1]), torch.randn(2, 4), torch.randn(2, 4))
    out = crd(
        torch.randn(2, 5), torch.randn(2, 5), torch.zeros(2, dtype=torch.long), torch.tensor([0, 9])
    )
    assert torch.isfinite(out["loss"]) and crd.z_estimated
    with pytest.raises(ValueError, match="queue"):
        crd.sample_negatives(torch.tensor([0]))


def test_half_precision_bank_halves_memory_and_tracks_the_float32_bank():
    banks = {
        dtype: MemoryBank(200, MemoryOptions(embed_dim=64, bank_dtype=name), seed=0)
        for dtype, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16"))
    }
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows = torch.randint(200, (16,), generator=generator)
        new = torch.nn.functional.normalize(torch.randn(16, 64, generator=generator), dim=1)
        for bank in banks.values():
            bank.update(rows, new)
    full, half = banks[torch.float32].memory, banks[torch.bfloat16].memory
    assert half.dtype == torch.bfloat16 and half.nbytes * 2 == full.nbytes
    assert (half.float() - full).abs().max() < 1e-2  # bf16 keeps 8 bits of mantissa
    torch.testing.assert_close(half.float().norm(dim=1), torch.ones(200), atol=1e-2, rtol=0)


def test_wcord_with_a_bf16_queue_trains_its_heads():
    loss = WCoRDLoss(
        8,
        8,
        num_samples=100,
        embed_dim=4,
        num_negatives=16,
        negatives="queue",
        bank_dtype="bfloat16",
        lambda_local=0.0,
    )
    out = loss(torch.randn(4, 8), torch.randn(4, 8), indices=torch.arange(4))
    out["loss"].backward()
    assert loss.teacher_bank.memory.dtype == torch.bfloat16
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for p in loss.student_head.parameters()
        if p.requires_grad
    )


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "distill.wcord.sharing=anchor",
            "invalid sharing='anchor' (must be batch under negatives=queue",
        ),
        (
            "distill.crd.sharing=anchor",
            "invalid sharing='anchor' (must be batch under negatives=queue",
        ),
    ],
)
def test_queue_with_per_anchor_sharing_is_refused_at_load(override, message):
    section = override.split(".")[1]
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(RunConfig, overrides=[f"distill.{section}.negatives=queue", override])
