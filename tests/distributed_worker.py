"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (CPU, gloo).

Trains a tiny WCoRD student for a few steps through the real loop and writes, per rank, the
memory banks, the student's weights and the indices this rank saw, for the test to compare.
"""

from __future__ import annotations

import sys

import torch
from accelerate import Accelerator

from xmodal.data.arrays import ArrayDataset, make_loader
from xmodal.encoders import create_encoder
from xmodal.objectives.wcord import WCoRDLoss
from xmodal.training.loop import fit
from xmodal.training.optim import OptimConfig
from xmodal.training.task import DistillationTask


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)  # identical initial weights and data on every rank
    n = 64
    data = ArrayDataset(
        {"depth": torch.rand(n, 8, 8) * 4 + 0.5, "label": torch.randint(0, 4, (n,))}
    )
    loss = WCoRDLoss(
        teacher_dim=12,
        student_dim=16,
        num_samples=n,
        embed_dim=8,
        num_negatives=16,
        momentum=0.5,
        seed=0,
    )
    student = create_encoder("resnet8", "depth", width_multiplier=0.25)
    task = DistillationTask(student, loss, teacher_features=torch.randn(n, 12))
    seen: list[torch.Tensor] = []
    original = task.after_step

    def recording_after_step(outputs, batch, acc):
        seen.append(batch["index"].clone())
        original(outputs, batch, acc)

    task.after_step = recording_after_step  # type: ignore[method-assign]
    bank_before = loss.teacher_bank.memory.clone()
    fit(
        task,
        make_loader(data, 8, shuffle=True, seed=0, drop_last=True),
        OptimConfig(epochs=1, lr=1e-2),
        accelerator,
        description="ddp",
    )
    rank = accelerator.process_index
    torch.save(
        {
            "teacher_bank": loss.teacher_bank.memory,
            "student_bank": loss.student_bank.memory,
            "bank_before": bank_before,
            "seen": torch.cat(seen),
            "world": accelerator.num_processes,
            "out_dir": out_dir,
            "weights": {k: v.detach().clone() for k, v in task.student.state_dict().items()},
        },
        f"{out_dir}/rank{rank}.pt",
    )
    rows_in_shares(out_dir, accelerator)


def rows_in_shares(out_dir: str, accelerator: Accelerator) -> None:
    """Probe-style extraction split over the processes: each one's share and the gathered result."""
    from xmodal.training.distributed import computed_in_shares

    values = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3) ** 2
    results, computed = {}, {}
    for total in (7, 6, 1):
        asked: list[int] = []

        def compute(rows: slice, total: int = total, asked: list[int] = asked) -> torch.Tensor:
            asked.extend(range(total)[rows])
            return values[:total][rows]

        results[total] = computed_in_shares(compute, total, accelerator)
        computed[total] = torch.tensor(asked, dtype=torch.long)
    torch.save(
        {"results": results, "computed": computed},
        f"{out_dir}/shares{accelerator.process_index}.pt",
    )


def gathered_local_term(out_dir: str) -> None:
    """The local term with ``local_scope="global"`` on this rank's half of a fixed batch.

    Its value and the raw gradients of this rank's rows, for comparison with one process.
    """
    import torch.distributed as dist
    from torch.nn import functional as F

    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(7)
    u_all = F.normalize(torch.randn(8, 6, generator=g), dim=1)
    v_all = F.normalize(torch.randn(8, 6, generator=g), dim=1)
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
    u, v = u_all[rows].clone().requires_grad_(), v_all[rows].clone().requires_grad_()
    loss = WCoRDLoss(
        teacher_dim=6,
        student_dim=6,
        num_samples=8,
        embed_dim=6,
        lambda_global=0.0,
        lambda_local=1.0,
        local_scope="global",
    )
    term = loss.local_term(u, v)
    term.backward()
    torch.save(
        {
            "term": term.detach(),
            "u_grad": u.grad,
            "v_grad": v.grad,
            "rows": (rows.start, rows.stop),
            "u_all": u_all,
            "v_all": v_all,
        },
        f"{out_dir}/local{rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1])
    gathered_local_term(sys.argv[1])
