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
from xmodal.training.resume import (
    LOADER_GENERATOR,
    module_generators,
    read_train_state,
    restore_train_state,
    save_train_state,
)
from xmodal.training.spread import spread_probe, spread_problem, student_spread
from xmodal.training.task import DistillationTask, NonFiniteFeatures


class TrainingDiverged(XmodalError):
    """The loss became NaN or infinite."""


def fit(
    task: DistillationTask,
    loader: DataLoader[Any],
    cfg: OptimConfig,
    accelerator: Accelerator,
    description: str = "train",
    console: Any = None,
    state_path: Path | None = None,
    state_key: str = "",
    checkpoint_every: int = 0,
    log_prefix: str | None = None,
    settings: str = "optim",
) -> list[dict[str, float]]:
    """Train ``task`` in place for ``cfg.epochs`` epochs; returns per-epoch mean metrics.

    The metrics: every scalar the objective returns, ``lr``, the learning rate at the epoch's
    end, and ``spread_rank`` and ``spread_cosine``, the effective rank and mean pairwise cosine
    of the student's features of the first 256 training samples at the epoch's end (in eval
    mode, without touching weights, statistics or random state; see
    :mod:`xmodal.training.spread`; left out, with the check of those features below, where the
    loader's dataset cannot be read by column). Every process computes them on its own
    replica; the main process's values are the ones saved.

    With ``state_path``, the full training state is saved there (main process) after every
    epoch and, with ``checkpoint_every > 0``, every that many optimiser steps inside an epoch.
    When a state saved under the same ``state_key`` exists on every process, training
    continues from it, mid-epoch included, and takes the same steps an uninterrupted run would
    (see :mod:`xmodal.training.resume`). With ``log_prefix``, every scalar the objective
    returns and the learning rate go to the accelerator's trackers each step, as
    ``<log_prefix>/<name>``.

    Raises:
        TrainingDiverged: on a non-finite loss or student features (naming the epoch and
            step), non-finite weights or buffers after an epoch, or, after an epoch, student
            features of the probe batch that are NaN or inf or all the same (a blow-up that left
            the weights finite), before its state is saved: a diverged model is never kept.
            The message names the settings to change (``settings``, e.g. ``distill.optim``).
    """
    if cfg.epochs == 0:
        return []
    modality = getattr(task, "modality", None)
    probe = None if modality is None else spread_probe(loader.dataset, modality)
    probe_batch = loader.batch_size or len(probe or [])  # no more memory than a training batch
    params = [p for p in task.parameters() if p.requires_grad]
    raw_optimizer = build_optimizer(params, cfg)
    generators = module_generators(task)
    order = getattr(getattr(loader, "sampler", None), "generator", None)  # the data order's
    if order is not None:
        generators[LOADER_GENERATOR] = order
    model, optimizer, loader = accelerator.prepare(task, raw_optimizer, loader)
    # The schedule counts optimiser steps of the job (the sharded loader's length), so a run on
    # N processes with batch B follows the same learning rates as one process with batch N*B.
    schedule = build_schedule(raw_optimizer, cfg, steps_per_epoch=len(loader))
    core = accelerator.unwrap_model(model)
    history: list[dict[str, float]] = []
    start_epoch, start_step, sums = 0, 0, {}
    epoch_order: Any = None  # the data order's generator state when the current epoch began
    notice = console.print if console is not None and accelerator.is_main_process else None
    state = read_train_state(state_path, state_key, notice) if state_path is not None else None
    resume = _everywhere(state is not None, accelerator)  # a collective: every process calls it
    if resume and state is not None:
        restore_train_state(state, core, optimizer, schedule, accelerator.scaler, generators)
        start_epoch, history = int(state["epoch"]), list(state["history"])
        start_step, sums = int(state.get("step", 0)), dict(state.get("sums", {}))
        epoch_order = state.get("epoch_order")

    def save(epoch: int, step: int, sums: dict[str, float]) -> None:
        if state_path is not None and accelerator.is_main_process:
            save_train_state(
                state_path,
                state_key,
                epoch,
                core,
                optimizer,
                schedule,
                accelerator.scaler,
                generators,
                history,
                step=step,
                sums=sums,
                epoch_order=epoch_order,
            )

    steps = len(loader)
    with progress_bar(accelerator.is_main_process, console) as bar:
        job = bar.add_task(
            description,
            total=cfg.epochs * steps,
            info="",
            completed=start_epoch * steps + start_step,
        )
        if start_epoch or start_step:
            bar.update(job, info=f"resumed at epoch {start_epoch + 1}, step {start_step}")
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            epoch_loader, first = loader, 0
            if epoch == start_epoch and start_step:
                # replay the interrupted epoch's order, skipping (without reading) what is done
                if order is not None and epoch_order is not None:
                    order.set_state(epoch_order)
                epoch_loader, first = accelerator.skip_first_batches(loader, start_step), start_step
            else:
                sums = {}
                epoch_order = order.get_state() if order is not None else None
            for step, batch in enumerate(epoch_loader, start=first):
                try:
                    with accelerator.autocast():
                        out = model(batch)
                except NonFiniteFeatures as exc:  # e.g. an OT solver refusing a NaN cost
                    raise TrainingDiverged(
                        f"{description}: {exc} at epoch {epoch + 1}, step {step + 1}; lower the "
                        f"learning rate ({settings}.lr) or enable gradient clipping "
                        f"({settings}.grad_clip)"
                    ) from None
                loss = out["loss"]
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"{description}: loss is {loss.item()} at epoch {epoch + 1}, "
                        f"step {step + 1}; "
                        f"lower the learning rate ({settings}.lr) or enable gradient clipping "
                        f"({settings}.grad_clip)"
                    )
                accelerator.backward(loss)
                if cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                if not accelerator.optimizer_step_was_skipped:  # fp16 overflow: no step taken
                    schedule.step()
                optimizer.zero_grad(set_to_none=True)
                core.after_step(out, batch, accelerator)
                scalars = {k: float(v.detach()) for k, v in out.items() if v.ndim == 0}
                for key, value in scalars.items():
                    sums[key] = sums.get(key, 0.0) + value
                bar.update(
                    job,
                    advance=1,
                    info=f"epoch {epoch + 1}/{cfg.epochs} loss {scalars['loss']:.3f}",
                )
                done = epoch * steps + step + 1
                if log_prefix is not None and accelerator.trackers:  # main process only
                    scalars["lr"] = schedule.get_last_lr()[0]
                    accelerator.log({f"{log_prefix}/{k}": v for k, v in scalars.items()}, step=done)
                if checkpoint_every > 0 and done % checkpoint_every == 0 and step + 1 < steps:
                    _check_finite(
                        core, f"{description}: at epoch {epoch + 1}, step {step + 1}", settings
                    )
                    save(epoch, step + 1, sums)
            _check_finite(core, f"{description}: after epoch {epoch + 1}", settings)
            spread: dict[str, float] = {}
            if probe is not None:
                with accelerator.autocast():
                    spread = student_spread(core.student, probe, accelerator.device, probe_batch)
                _check_embeddings(
                    spread, len(probe), f"{description}: after epoch {epoch + 1}", settings
                )
            history.append(
                {k: v / max(1, steps) for k, v in sums.items()}
                | {"lr": schedule.get_last_lr()[0], "epoch": epoch + 1}
                | spread
            )
            save(epoch + 1, 0, {})
    _sync_batchnorm_statistics(core, accelerator)
    accelerator.wait_for_everyone()
    accelerator.free_memory()  # drop the accelerator's references; ``task`` stays trained
    return history


def _check_finite(module: torch.nn.Module, where: str, settings: str) -> None:
    """Raise :class:`TrainingDiverged` if any floating weight or buffer of ``module`` is NaN/inf.

    A last step can diverge after its loss was checked.
    """
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDiverged(
                f"{where}, '{name}' holds NaN or inf (training diverged); lower "
                f"the learning rate ({settings}.lr) or enable gradient "
                f"clipping ({settings}.grad_clip)"
            )


def _check_embeddings(spread: dict[str, float], samples: int, where: str, settings: str) -> None:
    """Raise :class:`TrainingDiverged` if the student's features of the probe batch are unusable.

    That is, if they (their ``spread``) are NaN or inf, or all one point (see
    :func:`~xmodal.training.spread.spread_problem`): a training can blow up while its weights
    stay finite.
    """
    why = spread_problem(spread)
    if why is not None:
        raise TrainingDiverged(
            f"{where}, the student's embeddings of the first {samples} "
            f"training samples are unusable ({why}): training diverged or "
            f"collapsed; lower the learning rate ({settings}.lr) or enable "
            f"gradient clipping ({settings}.grad_clip)"
        )


def _everywhere(flag: bool, accelerator: Accelerator) -> bool:
    """True only if ``flag`` holds on every process.

    A state file rank 0 sees but another machine does not must not split the processes into
    resumed and fresh ones.
    """
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
