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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", "29531", str(WORKER), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


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
    never = sorted(set(range(before.shape[0])) - set(ranks[0]["seen"].tolist())
                   - set(ranks[1]["seen"].tolist()))
    assert torch.equal(after[never], before[never])


def test_student_weights_stay_in_sync(ranks):
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key
