"""The training loop, run through Hugging Face Accelerate (one CPU to many GPUs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from xmodal.core.errors import XmodalError
from xmodal.training.optim import OptimConfig, build_optimizer, build_schedule
from xmodal.training.progress import progress_bar
from xmodal.training.resume import (module_generators, read_train_state, restore_train_state,
                                    save_train_state)
from xmodal.training.task import DistillationTask


class TrainingDiverged(XmodalError):
    """The loss became NaN or infinite."""


def fit(task: DistillationTask, loader: DataLoader, cfg: OptimConfig, accelerator: Accelerator,
        description: str = "train", console: Any = None, state_path: Path | None = None,
        state_key: str = "") -> list[dict[str, float]]:
    """Train ``task`` in place for ``cfg.epochs`` epochs; returns per-epoch mean metrics
    (every scalar the objective returns, and ``lr``, the mean learning rate of the epoch's steps).

    With ``state_path``, the full training state is saved there after every epoch (main
    process) and, when a state saved under the same ``state_key`` exists on every process,
    training continues after its last epoch and takes the same steps an uninterrupted run
    would (see :mod:`xmodal.training.resume`).

    Raises:
        TrainingDiverged: on a non-finite loss, naming the epoch and step.
    """
    if cfg.epochs == 0:
        return []
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg)
    schedule = build_schedule(optimizer, cfg, steps_per_epoch=len(loader))
    generators = module_generators(task)
    if getattr(getattr(loader, "sampler", None), "generator", None) is not None:
        generators["loader.sampler.generator"] = loader.sampler.generator
    model, optimizer, loader, schedule = accelerator.prepare(task, optimizer, loader, schedule)
    core = accelerator.unwrap_model(model)
    history: list[dict[str, float]] = []
    start = 0
    state = read_train_state(state_path, state_key) if state_path is not None else None
    if _everywhere(state is not None, accelerator):
        restore_train_state(state, core, optimizer, schedule, accelerator.scaler, generators)
        start, history = int(state["epoch"]), list(state["history"])
    with progress_bar(accelerator.is_main_process, console) as bar:
        job = bar.add_task(description, total=cfg.epochs * len(loader), info="",
                           completed=start * len(loader))
        if start:
            bar.update(job, info=f"resumed after epoch {start}/{cfg.epochs}")
        for epoch in range(start, cfg.epochs):
            model.train()
            sums: dict[str, float] = {}
            for step, batch in enumerate(loader):
                with accelerator.autocast():
                    out = model(batch)
                loss = out["loss"]
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"{description}: loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                        "lower the learning rate (optim.lr) or enable gradient clipping (optim.grad_clip)")
                accelerator.backward(loss)
                if cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                sums["lr"] = sums.get("lr", 0.0) + optimizer.param_groups[0]["lr"]  # epoch mean
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                core.after_step(out, batch, accelerator)
                for key, value in out.items():
                    if value.ndim == 0:
                        sums[key] = sums.get(key, 0.0) + float(value.detach())
                bar.update(job, advance=1, info=f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f}")
            history.append({k: v / max(1, len(loader)) for k, v in sums.items()} | {"epoch": epoch + 1})
            if state_path is not None and accelerator.is_main_process:
                save_train_state(state_path, state_key, epoch + 1, core, optimizer, schedule,
                                 accelerator.scaler, generators, history)
    _sync_batchnorm_statistics(core, accelerator)
    accelerator.wait_for_everyone()
    accelerator.free_memory()  # drop the accelerator's references; ``task`` stays trained
    return history


def _everywhere(flag: bool, accelerator: Accelerator) -> bool:
    """True only if ``flag`` holds on every process (a state file rank 0 sees but another
    machine does not must not split the processes into resumed and fresh ones)."""
    if accelerator.num_processes == 1:
        return flag
    votes = accelerator.gather(torch.tensor([int(flag)], device=accelerator.device))
    return bool(votes.min().item())


def _sync_batchnorm_statistics(module: torch.nn.Module, accelerator: Accelerator) -> None:
    """Give every process rank 0's BatchNorm running statistics.

    DDP broadcasts buffers at the start of each forward, so after the last step each replica
    holds statistics updated by its own last batch; the saved checkpoint (rank 0) and every
    replica then agree. Only BatchNorm buffers: memory banks are kept equal by construction.
    """
    if accelerator.num_processes == 1:
        return
    import torch.distributed as dist

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for buffer in (m.running_mean, m.running_var, m.num_batches_tracked):
                if buffer is not None:
                    dist.broadcast(buffer, src=0)
