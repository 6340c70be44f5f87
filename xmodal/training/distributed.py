"""One Accelerator per run, which joins the launcher's job on GPU and CPU machines alike.

``torchrun`` and ``accelerate launch`` describe the job in environment variables
(``WORLD_SIZE``, ``RANK``...). On a machine without CUDA, Accelerate joins that job only when
asked for the CPU; otherwise every process runs alone and they race on the same files. So on
such machines a launched process asks for the CPU itself, and any process whose Accelerator
disagrees with its launcher about the job's size stops instead of running as a racing copy.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch import Tensor

from xmodal.core.errors import XmodalError
from xmodal.core.launched import launched_world_size


class LaunchError(XmodalError):
    """A process started by a launcher that did not join the launcher's job."""


def create_accelerator(
    *, cpu: bool = False, mixed_precision: str = "no", **kwargs: Any
) -> Accelerator:
    """An Accelerator that is part of the launcher's job, or a clear error.

    Args:
        cpu: force the CPU even where a GPU exists.
        mixed_precision: ``no``, ``bf16`` or ``fp16``.
        **kwargs: passed to ``Accelerator`` (e.g. ``log_with``, ``project_dir``).
    """
    world = launched_world_size()
    # DDP's hint about 1x1-conv gradient layouts costs nothing measurable here; keep logs clean
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if world > 1 and not torch.cuda.is_available():
        cpu = True  # Accelerate joins a CPU job (gloo) only when asked for the CPU
    accelerator = Accelerator(cpu=cpu, mixed_precision=mixed_precision, **kwargs)
    if accelerator.num_processes != world:
        rank = os.environ.get("RANK", "?")
        raise LaunchError(
            f"this process was started as rank {rank} of a {world}-process job, but it joined a "
            f"job of {accelerator.num_processes}; it stops rather than run as a racing copy. "
            "Check the launcher's settings (MASTER_ADDR/MASTER_PORT), or start the run with "
            "'xmodal run PIPELINE --num-processes N'"
        )
    return accelerator


def main_process_decides(value: Any, accelerator: Accelerator) -> Any:
    """``value`` as computed on the main process, on every process.

    A cache check made by each process on its own can disagree (the main process may finish a
    unit between two other processes' checks), which would split the processes between
    'compute' and 'reuse' and deadlock their next collective. ``value`` must be picklable.
    """
    if accelerator.num_processes == 1:
        return value
    box = [value if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def computed_in_shares(
    compute: Callable[[slice], Tensor], total: int, accelerator: Accelerator
) -> Tensor:
    """``compute(rows)`` over ``range(total)``, the rows shared among the processes.

    Each process computes one contiguous share of the rows once; the shares are gathered in
    order on every process -> ``[total, ...]`` on CPU.

    ``compute`` must map a slice of ``n`` rows to a ``[n, ...]`` tensor (the same trailing
    shape and dtype on every process). With one process, or fewer rows than processes, it is
    called once on all rows.
    """
    world, rank = accelerator.num_processes, accelerator.process_index
    if world == 1 or total < world:
        return compute(slice(0, total))
    share = -(-total // world)  # ceil: every share but the last is full
    start, stop = min(rank * share, total), min((rank + 1) * share, total)
    # an empty share (e.g. 5 rows on 4 processes) still needs the trailing shape and dtype
    part = (compute(slice(start, stop)) if stop > start else compute(slice(0, 1))[:0]).to(
        accelerator.device
    )
    padded = part.new_zeros((share, *part.shape[1:]))  # gathers need equal shapes
    padded[: part.shape[0]] = part
    # [world * share, ...] in rank order
    gathered: Tensor = accelerator.gather(padded.contiguous()).cpu()
    return gathered[:total]  # the padding sits after the last real row, in the last share
