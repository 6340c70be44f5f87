"""Train one encoder with one registered method: the entry point stages call.

:func:`train_encoder` takes the encoder and three objects: what it learns from
(:class:`TrainJob`: the method, its options, the data, the teacher), how it trains
(:class:`TrainSetup`) and where its state and progress go (:class:`TrainOutputs`). A stage
builds the job once, with the method's options as the config loaded them, and the job reaches
the objective as it is (``method.build(context, job.options)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor, nn

from xmodal.core.errors import ConfigError
from xmodal.core.registry import METHODS
from xmodal.data.arrays import make_loader
from xmodal.data.source import LoadedDataset
from xmodal.encoders.base import Encoder
from xmodal.encoders.memory_format import channels_last
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
    """The per-dimension ``(mean [D], std [D])`` that :func:`standardise_features` applies.

    To ``features`` ``[N, D]`` (std floored at 1e-6); saved beside an objective's heads, whose
    teacher head was trained on the standardised features.
    """
    return features.mean(0), features.std(0).clamp_min(1e-6)


@dataclass
class TrainResult:
    """What a training returns.

    Attributes:
        history: per-epoch mean of every scalar the objective returns.
        objective: the trained objective module (heads, classifier), None for ``none``.
    """

    history: list[dict[str, float]]
    objective: nn.Module | None


@dataclass(frozen=True)
class TeacherOutputs:
    """One seed's frozen teacher outputs on the train split, which students learn from.

    Attributes:
        features: ``[N_train, Dt]`` teacher embeddings, for methods that need the teacher;
            standardised by :func:`train_encoder` (see :func:`standardise_features`).
        logits: ``[N_train, Ct]`` teacher logits over its classes ``Ct``, for logit-based
            methods (KD), or None (it has no classifier).
        own_classes: those classes are a label space of the teacher's own, not the dataset's
            (a transfer teacher); KD then reads them through a head of their size.
        classes: ``Ct``, or None without logits.
        digest: the teacher checkpoint's content digest, which keys every student trained
            from it ("" where no checkpoint stands behind the outputs).
        classifier: the content digest of its ``classifier.pt``, or None; keys the students of
            its logits (a replaced classifier beside an unchanged encoder gives other logits).
    """

    features: Tensor | None = None
    logits: Tensor | None = None
    own_classes: bool = False
    classes: int | None = None
    digest: str = ""
    classifier: str | None = None


@dataclass(frozen=True)
class TrainJob:
    """What an encoder learns from: a registered method with its options, a dataset, a teacher.

    Attributes:
        method: the method's registered name (``xmodal list methods``).
        options: the method's options dataclass (``distill.<options key>``), handed to its
            objective as it is; None for a method without options.
        dataset: the data; training reads its ``train`` split.
        seed: seeds the objective, the data order and the augmentation.
        teacher: the frozen teacher's outputs (None: no teacher); the method is given the
            parts it needs (``needs_for(options)``).
        description: names the job in the progress bar and in messages.
    """

    method: str
    options: Any
    dataset: LoadedDataset
    seed: int
    teacher: TeacherOutputs | None = None
    description: str = "train"


@dataclass
class TrainSetup:
    """How to train.

    Attributes:
        optim: the optimiser, schedule, epochs and batch size.
        accelerator: the devices and processes (and mixed precision) to train on.
        optim_key: the config key of ``optim`` (``distill.optim``), named in messages.
        num_workers: DataLoader workers reading the training batches.
        channels_last: train with 2-D convolution weights channels-last (faster, less exact
            on CPU; see :func:`~xmodal.encoders.memory_format.channels_last`).
    """

    optim: OptimConfig
    accelerator: Accelerator
    optim_key: str = "optim"
    num_workers: int = 0
    channels_last: bool = False


@dataclass
class TrainOutputs:
    """Where a training's state and progress go (see :func:`~xmodal.training.loop.fit`).

    Attributes:
        state_path: the resumable training state's file, or None to keep none.
        state_key: the key the state is saved under (a state of another key is not resumed).
        checkpoint_every: also save the state every this many optimiser steps (0: per epoch).
        log_prefix: name of this training in the experiment trackers, or None.
        console: where progress is printed (a rich console), or None.
    """

    state_path: Path | None = None
    state_key: str = ""
    checkpoint_every: int = 0
    log_prefix: str | None = None
    console: Any = None


def train_encoder(
    encoder: Encoder, job: TrainJob, setup: TrainSetup, outputs: TrainOutputs | None = None
) -> TrainResult:
    """Train ``encoder`` in place on the train split with ``job.method`` and its options.

    Args:
        encoder: the student (or teacher) encoder, trained in place.
        job: what it learns from.
        setup: how to train it.
        outputs: where its state and progress go (none kept by default).

    Returns:
        The per-epoch history and the trained objective (empty and None when nothing trains:
        ``none``, or ``optim.epochs == 0``).

    Raises:
        ConfigError: when the method cannot run on this set-up (its ``build`` refuses it).
    """
    outputs = outputs if outputs is not None else TrainOutputs()
    method: type[Objective] = METHODS.get(job.method)
    optim, seed = setup.optim, job.seed
    if not method.trains or optim.epochs == 0:  # nothing to train (e.g. a frozen teacher)
        return TrainResult([], None)
    needs = method.needs_for(job.options)
    teacher = job.teacher if job.teacher is not None else TeacherOutputs()
    uses_teacher, uses_logits = "teacher" in needs, "teacher_logits" in needs
    teacher_features = teacher.features if uses_teacher else None
    if uses_teacher and teacher_features is None:
        raise ValueError(f"method '{job.method}' needs teacher features")
    train = job.dataset.splits["train"]
    if hasattr(train, "select"):  # read only what training uses (a plugin's split may not offer it)
        train = train.select([k for k in (encoder.modality, "label") if k in train])
    if teacher_features is not None:
        teacher_features = standardise_features(teacher_features)
    set_seed(seed)
    context = ObjectiveContext(
        student_dim=encoder.embed_dim,
        teacher_dim=None if teacher_features is None else teacher_features.shape[1],
        num_samples=len(train),
        num_classes=job.dataset.num_classes,
        seed=seed,
        teacher_logits=teacher.logits if uses_logits else None,
        train_labels=train.column("label") if "label" in train else None,
        batch_size=min(optim.batch_size, len(train)),
        teacher_own_classes=teacher.own_classes and uses_logits,
    )
    try:  # the options as the config loaded them, kept by the objective
        objective = method.build(context, job.options)
    except ValueError as exc:  # a method that cannot run on this set-up: a user's choice to fix
        raise ConfigError(f"method '{job.method}': {exc}") from None
    task = DistillationTask(
        encoder,
        objective,
        teacher_features if uses_teacher else None,
        hflip=optim.hflip,
        seed=seed,
        crop_padding=optim.crop_padding,
    )
    loader = make_loader(
        train,  # type: ignore[arg-type]  # a SplitData reads batches like a Dataset
        optim.batch_size,
        shuffle=True,
        seed=seed,
        num_workers=setup.num_workers,
        drop_last=len(train) > optim.batch_size,
    )
    with channels_last(task, setup.channels_last):
        history = fit(
            task,
            loader,
            optim,
            setup.accelerator,
            description=job.description,
            console=outputs.console,
            state_path=outputs.state_path,
            state_key=outputs.state_key,
            checkpoint_every=outputs.checkpoint_every,
            log_prefix=outputs.log_prefix,
            settings=setup.optim_key,
        )
    return TrainResult(history, objective)
