"""All-gather across processes that keeps the autograd graph (for batch-level objectives).

``torch.distributed.all_gather`` returns tensors with no gradient history, so a term computed on
the gathered batch would only train on the local rows. The autograd-aware collective sends
each rank's part of the gradient back to it (summed over ranks in the backward pass).
Gradient scale: every rank computes the same term ``L`` on the global batch, so the backward
gives each rank ``world_size * dL/dx_local``; DDP's mean over ranks of the parameter gradients
then equals ``dL/dtheta`` of the global-batch term, exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 without torch.distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def all_gather_with_grad(x: Tensor) -> Tensor:
    """``[B, ...]`` on each process -> ``[world * B, ...]`` in rank order, differentiable.

    Every process must pass the same ``B`` (the loader's ``drop_last`` guarantees it); a
    mismatch raises ValueError naming the sizes instead of hanging the collective.
    """
    world = world_size()
    if world == 1:
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    sizes_list = [int(s.item()) for s in sizes]
    if len(set(sizes_list)) != 1:
        raise ValueError(
            f"all_gather_with_grad: per-process batch sizes differ {sizes_list}; "
            "use a loader with drop_last=True"
        )
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x)  # type: ignore[no-untyped-call]  # torch's function has no annotations
    return torch.cat(parts, dim=0)
