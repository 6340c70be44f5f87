"""Train one encoder with one registered method: the entry point stages call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor, nn

from xmodal.core.errors import ConfigError
from xmodal.data.arrays import make_loader
from xmodal.data.source import LoadedDataset
from xmodal.encoders.base import Encoder
from xmodal.objectives.objective import Objective, ObjectiveContext
from xmodal.training.loop import fit
from xmodal.training.optim import OptimConfig
from xmodal.training.task import DistillationTask


def standardise_features(features: Tensor) -> Tensor:
    """Per-dimension zero mean, unit variance over the training split (``[N, D]`` -> ``[N, D]``).

    Pooled post-ReLU teacher features all lie in the positive orthant with a large common mean.
    A 1-Lipschitz (spectrally normalised) head cannot amplify their differences, so its bias
    dominates and every projection points the same way: the embeddings collapse. Standardising
    is an invertible affine map, so no information is lost.
    """
    mean, std = feature_standardisation(features)
    return (features - mean) / std


def feature_standardisation(features: Tensor) -> tuple[Tensor, Tensor]:
    """The per-dimension ``(mean [D], std [D])`` that :func:`standardise_features` applies to
    ``features`` ``[N, D]`` (std floored at 1e-6); saved beside an objective's heads, whose
    teacher head was trained on the standardised features.
    """
    return features.mean(0), features.std(0).clamp_min(1e-6)


@dataclass
class TrainResult:
    """Attributes:
    history: per-epoch mean of every scalar the objective returns.
    objective: the trained objective module (heads, classifier), None for ``none``.
    """

    history: list[dict[str, float]]
    objective: nn.Module | None


def train_encoder(
    encoder: Encoder,
    method: type[Objective],
    options: Any,
    optim: OptimConfig,
    dataset: LoadedDataset,
    accelerator: Accelerator,
    seed: int,
    teacher_features: Tensor | None = None,
    teacher_logits: Tensor | None = None,
    description: str = "train",
    console: Any = None,
    state_path: Path | None = None,
    state_key: str = "",
    checkpoint_every: int = 0,
    log_prefix: str | None = None,
    settings: str = "optim",
    method_name: str = "",
    num_workers: int = 0,
    teacher_own_classes: bool = False,
) -> TrainResult:
    """Train ``encoder`` in place on the train split with ``method`` (a registered
    :class:`Objective` class) and its ``options``.

    Args:
        teacher_features: ``[N_train, Dt]`` frozen teacher embeddings, required when the
            method needs the teacher; standardised here (see :func:`standardise_features`).
        teacher_logits: ``[N_train, Ct]`` frozen teacher logits, for logit-based methods (KD),
            over the teacher's classes ``Ct``.
        teacher_own_classes: those classes are a label space of the teacher's own, not the
            dataset's (a transfer teacher); KD then reads them through a head of their size.
        state_path, state_key, checkpoint_every: training state for resuming (see :func:`fit`).
        log_prefix: name of this training in the experiment trackers (see :func:`fit`).
        settings: the config section of ``optim``, named in divergence messages.
        method_name: the method's registered name, for messages.
        num_workers: DataLoader workers reading the training batches.
    """
    if not method.trains or optim.epochs == 0:  # nothing to train (e.g. a frozen teacher)
        return TrainResult([], None)
    uses_teacher = "teacher" in method.needs_for(options)
    if uses_teacher and teacher_features is None:
        raise ValueError(f"method '{method.__name__}' needs teacher features")
    train = dataset.splits["train"]
    if teacher_features is not None:
        teacher_features = standardise_features(teacher_features)
    set_seed(seed)
    context = ObjectiveContext(
        student_dim=encoder.embed_dim,
        teacher_dim=None if teacher_features is None else teacher_features.shape[1],
        num_samples=len(train),
        num_classes=dataset.num_classes,
        seed=seed,
        teacher_logits=teacher_logits,
        train_labels=train.column("label") if "label" in train else None,
        batch_size=min(optim.batch_size, len(train)),
        teacher_own_classes=teacher_own_classes,
    )
    try:
        objective = method.build(context, options)
    except ValueError as exc:  # a method that cannot run on this set-up: a user's choice to fix
        raise ConfigError(f"method '{method_name or method.__name__}': {exc}") from None
    task = DistillationTask(
        encoder,
        objective,
        teacher_features if uses_teacher else None,
        hflip=optim.hflip,
        seed=seed,
        crop_padding=optim.crop_padding,
    )
    loader = make_loader(
        train,
        optim.batch_size,
        shuffle=True,
        seed=seed,
        num_workers=num_workers,
        drop_last=len(train) > optim.batch_size,
    )
    history = fit(
        task,
        loader,
        optim,
        accelerator,
        description=description,
        console=console,
        state_path=state_path,
        state_key=state_key,
        checkpoint_every=checkpoint_every,
        log_prefix=log_prefix,
        settings=settings,
    )
    return TrainResult(history, objective)
