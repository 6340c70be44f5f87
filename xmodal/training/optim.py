"""Optimiser and learning-rate schedule settings, and their construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from xmodal.core.checks import at_least, each, non_negative, positive, require, within


@dataclass
class OptimConfig:
    """How one model is trained.

    Attributes:
        epochs: passes over the training split (0 = no training).
        batch_size: samples per step per process.
        lr: peak learning rate; warm-up over the first ``warmup_epochs``, then ``schedule``.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9; Nesterov when ``nesterov``).
        schedule: ``cosine`` (to 0 at the last step) or ``multistep`` (times ``lr_decay`` at
            each epoch in ``milestones``, as CRD's CIFAR recipe: 0.1 at 150/180/210 of 240).
        milestones: epochs at which ``multistep`` decays the learning rate.
        lr_decay: the ``multistep`` factor.
        nesterov: Nesterov momentum for ``sgd``.
        grad_clip: max global gradient norm, 0 disables.
        hflip: mirror each training input left-right with probability 0.5 (image-aligned
            modalities only; normals also flip the sign of their x component).
        crop_padding: random crop back to the input size after zero-padding each side by this
            many pixels (CIFAR's "crop 32 pad 4": 4); 0 disables. Image-aligned modalities only.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    warmup_epochs: float = 1.0
    grad_clip: float = 5.0
    hflip: bool = False
    schedule: Literal["cosine", "multistep"] = "cosine"
    milestones: list[int] = field(default_factory=list)
    lr_decay: float = 0.1
    nesterov: bool = True
    crop_padding: int = 0

    def __post_init__(self) -> None:
        require(
            self,
            {
                "epochs": at_least(0),
                "batch_size": at_least(1),
                "lr": positive(),
                "weight_decay": non_negative(),
                "warmup_epochs": non_negative(),
                "grad_clip": non_negative(),
                "milestones": (
                    (lambda v: not v or each(at_least(1), increasing=True)[0](v)),
                    "increasing epochs >= 1",
                ),
                "lr_decay": within(0, 1, low_open=True),
                "crop_padding": at_least(0),
            },
        )


def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum 0.9 (Nesterov under ``cfg.nesterov``), over ``params``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to 0 at the last step, or step decay at milestones."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, int(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.schedule == "multistep":  # the factor for the epoch this step belongs to
            passed = sum(step >= m * steps_per_epoch for m in cfg.milestones)
            return cfg.lr_decay**passed
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
