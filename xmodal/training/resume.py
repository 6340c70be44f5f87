"""Training state: a killed run continues from its last checkpoint, mid-epoch included.

A distillation unit on real data trains for hours; restarting it after a crash or a pre-empted
job wastes them. After each epoch, and every ``runtime.checkpoint_every`` optimiser steps, the
main process writes everything the next step depends on (weights, memory banks and other
buffers, optimiser and schedule, mixed-precision scaler, the state of every random generator,
and the position in the data) atomically to one file, tagged with the unit's input
fingerprint. A resumed run therefore takes exactly the steps the uninterrupted one would have.
The file is read with ``weights_only=True`` (tensors and plain containers, never code) and used
only when its tag is the unit's key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.core.cache import load_checkpoint, save_atomic
from xmodal.core.errors import DataError

STATE_FORMAT = "xmodal-train-state"
#: name under which the data order's generator is saved
LOADER_GENERATOR = "loader.sampler.generator"


def module_generators(module: nn.Module) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` held as an attribute by ``module`` or a submodule.

    By a stable name (``"<submodule path>.<attribute>"``).
    """
    found = {}
    for path, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, torch.Generator):
                found[f"{path}.{attr}"] = value
    return found


def save_train_state(
    path: Path,
    key: str,
    epoch: int,
    module: nn.Module,
    optimizer: Any,
    schedule: Any,
    scaler: Any,
    generators: dict[str, torch.Generator],
    history: list[dict[str, float]],
    step: int = 0,
    sums: dict[str, float] | None = None,
    epoch_order: Tensor | None = None,
) -> None:
    """Write the state after ``epoch`` finished epochs and ``step`` optimiser steps of the next.

    Call on the main process only.

    Mid-epoch (``step > 0``) the state also holds the running metric ``sums`` of that epoch and
    ``epoch_order``, the data order's generator state when the epoch began, from which the
    epoch's order is replayed and its first ``step`` batches skipped.
    """
    state = {
        "format": STATE_FORMAT,
        "key": key,
        "epoch": epoch,
        "history": history,
        "step": step,
        "sums": sums or {},
        "epoch_order": epoch_order if step else None,
        "module": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "generators": {name: g.get_state() for name, g in generators.items()},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    save_atomic(state, path)


def read_train_state(
    path: Path, key: str, notice: Callable[[str], None] | None = None
) -> dict[str, Any] | None:
    """The saved state if it exists, is readable and belongs to the unit ``key``; else None.

    (A state from other inputs, a torn file, or one holding more than tensors and plain data,
    is never resumed: training starts over, and ``notice`` is told why).
    """
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
    except DataError:
        state, why = None, "unreadable or not plain tensors"
    else:
        why = "saved for other inputs"
    if isinstance(state, dict) and state.get("format") == STATE_FORMAT and state.get("key") == key:
        return state
    if notice is not None:
        notice(f"ignoring resume state '{path}' ({why}): training starts over")
    return None


def restore_train_state(
    state: dict[str, Any],
    module: nn.Module,
    optimizer: Any,
    schedule: Any,
    scaler: Any,
    generators: dict[str, torch.Generator],
) -> None:
    """Load ``state`` (from :func:`read_train_state`) into the live training objects."""
    module.load_state_dict(state["module"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    for name, g in generators.items():
        if name in state["generators"]:
            g.set_state(state["generators"][name])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
