"""Two real processes (torchrun, CPU, gloo): memory banks and weights stay identical."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists():
        pytest.skip("torchrun not available")
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent.parent)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        "29531",
        str(WORKER),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_processes_ran(ranks):
    assert [r["world"] for r in ranks] == [2, 2]
    # each rank saw a different shard of the data
    assert set(ranks[0]["seen"].tolist()) != set(ranks[1]["seen"].tolist())


def test_banks_identical_on_every_process(ranks):
    assert torch.equal(ranks[0]["teacher_bank"], ranks[1]["teacher_bank"])
    assert torch.equal(ranks[0]["student_bank"], ranks[1]["student_bank"])


def test_banks_hold_rows_seen_by_the_other_process(ranks):
    """Gather before update: rows only rank 1 saw were updated on rank 0 too."""
    only_rank1 = sorted(set(ranks[1]["seen"].tolist()) - set(ranks[0]["seen"].tolist()))
    assert only_rank1
    before, after = ranks[0]["bank_before"], ranks[0]["teacher_bank"]
    assert not torch.allclose(after[only_rank1], before[only_rank1])
    never = sorted(
        set(range(before.shape[0]))
        - set(ranks[0]["seen"].tolist())
        - set(ranks[1]["seen"].tolist())
    )
    assert torch.equal(after[never], before[never])


def test_student_weights_stay_in_sync(ranks):
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key


def test_gathered_local_term_is_the_global_batch_term(ranks):
    """local_scope="global": every rank computes the plan over both ranks' rows.

    The raw gradient of a rank's rows is world x the one-process gradient (DDP's mean then
    gives exactly the global-batch gradient).
    """
    from xmodal.objectives.wcord import WCoRDLoss

    out = Path(ranks[0]["out_dir"])
    parts = [torch.load(out / f"local{r}.pt", weights_only=True) for r in range(2)]
    u_all = parts[0]["u_all"].clone().requires_grad_()
    v_all = parts[0]["v_all"].clone().requires_grad_()
    single = WCoRDLoss(
        teacher_dim=6,
        student_dim=6,
        num_samples=8,
        embed_dim=6,
        lambda_global=0.0,
        lambda_local=1.0,
    )
    term = single.local_term(u_all, v_all)
    term.backward()
    for part in parts:
        start, stop = part["rows"]
        torch.testing.assert_close(part["term"], term.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(part["u_grad"], 2 * u_all.grad[start:stop], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(part["v_grad"], 2 * v_all.grad[start:stop], rtol=1e-5, atol=1e-7)


def test_shares_are_computed_once_and_gathered_in_order(ranks):
    """Probe features under 2 processes: each row is embedded by exactly one process.

    Every process holds all rows in the original order (7 rows: uneven shares; 1 row: fewer
    rows than processes, computed everywhere).
    """
    out = Path(ranks[0]["out_dir"])
    parts = [torch.load(out / f"shares{r}.pt", weights_only=True) for r in range(2)]
    values = torch.arange(21, dtype=torch.float32).reshape(7, 3) ** 2
    for total in (7, 6, 1):
        for part in parts:
            torch.testing.assert_close(part["results"][total], values[:total], rtol=0, atol=0)
        computed = torch.cat([part["computed"][total] for part in parts]).sort().values
        expected = torch.arange(total) if total >= 2 else torch.zeros(2, dtype=torch.long)
        assert torch.equal(computed, expected)
