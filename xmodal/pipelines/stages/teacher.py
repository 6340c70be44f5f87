"""Stage ``teacher``: train the teacher, then cache its frozen train-split outputs.

The teacher learns with labels (the dataset's own, or under ``teacher.task=transfer`` a
separate set with another label space); its train-split features ``[N, Dt]`` and logits
``[N, Ct]`` are the inputs of feature- and logit-based distillation.

The teacher keeps its own classifier: ``Ct`` is the size of its saved ``classifier.pt``, the
dataset's classes for a teacher trained on them, its own label space's for a transfer teacher
(``scenes``: 6 object categories against 8 scene classes) or for a ``teacher.checkpoint``
trained elsewhere. Logit methods then read the logits through a student head of size ``Ct``
(``own_classes`` in :class:`~xmodal.training.train.TeacherOutputs`). A teacher without a
classifier has no logits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from xmodal.core.cache import file_digest, load_checkpoint, load_keyed, save_atomic, save_keyed
from xmodal.core.config import fingerprint
from xmodal.core.errors import ConfigError, DataError
from xmodal.core.identity import components
from xmodal.data.source import LoadedDataset
from xmodal.encoders.base import Encoder
from xmodal.encoders.export import load_encoder
from xmodal.evaluation.features import extract_features
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.common import (
    check_modality,
    encoder_for,
    layout_key,
    trained_encoder_unit,
)
from xmodal.pipelines.stages.preprocess import prepared_cache
from xmodal.pipelines.state import ModelRecord, stage
from xmodal.training.progress import progress_bar
from xmodal.training.train import TeacherOutputs, TrainJob


@stage(
    "teacher",
    "train the teacher encoder and cache its features",
    needs=("dataset", "dataset_source", "data_key"),
    produces=("teachers", "models"),
    config=("teacher",),
)
def teacher(ctx: RunContext) -> None:
    """Train or load each seed's teacher; hand on its record and its train-split outputs."""
    cfg = ctx.config.teacher
    check_modality(ctx, cfg.modality, "teacher.modality")
    ctx.state.teachers = {}
    own_data = _teacher_task_data(ctx) if cfg.task == "transfer" and not cfg.checkpoint else None
    for seed in ctx.config.seeds:
        if cfg.checkpoint:
            model = _loaded_teacher(ctx, Path(cfg.checkpoint), seed)
        else:
            job = TrainJob(
                "supervised",
                None,
                own_data[0] if own_data is not None else ctx.state.dataset,
                seed,
                description=f"teacher {cfg.modality} supervised seed {seed}",
            )
            model = trained_encoder_unit(
                ctx,
                ("teacher", f"seed{seed}"),
                job,
                modality=cfg.modality,
                encoder_cfg=encoder_for(cfg.modality, cfg.encoder),
                optim=cfg.optim,
                role="teacher",
                data_key=own_data[1] if own_data is not None else None,
            )
        directory = Path(model.directory)
        classifier_file = directory / "classifier.pt"
        classifier = file_digest(classifier_file) if classifier_file.is_file() else None
        key = fingerprint(
            {
                "unit": model.key,
                "checkpoint": model.digest,
                # bf16 extraction gives other features than float32
                "mixed_precision": ctx.config.runtime.mixed_precision,
                **layout_key(ctx),
                "classifier": classifier,
                # the code that extracts them (a teacher.checkpoint's unit key is its digest)
                "components": components(frontend=model.modality, backbone=model.encoder),
            }
        )
        outputs_file = directory / f"outputs-{key}.pt"
        outputs, why = load_keyed(outputs_file, key)
        if outputs is not None and classifier_file.is_file() and "logits" not in outputs:
            outputs, why = None, "cached without the logits over the teacher's own classes"
        recompute = ctx.agree(outputs is None)  # the main process decides for all
        if recompute or outputs is None:
            if why != "missing":
                ctx.say(f"teacher outputs: {why}; recomputing them")
            features = _train_features(ctx, load_encoder(model.checkpoint), seed)
            outputs = {"features": features}
            if classifier_file.is_file():  # absent for a frozen (untrained) teacher
                outputs["logits"] = _teacher_logits(classifier_file, features, cfg.checkpoint)
            if ctx.accelerator.is_main_process:
                save_keyed(outputs, outputs_file, key)
            if recompute:
                ctx.accelerator.wait_for_everyone()
        for name, tensor in outputs.items():
            if not torch.isfinite(tensor).all():
                raise DataError(
                    f"teacher {name} in {outputs_file} contain NaN or inf: the teacher "
                    "diverged; lower teacher.optim.lr and delete that folder"
                )
        logits = outputs.get("logits")
        classes = None if logits is None else int(logits.shape[1])
        # a transfer teacher's classes are its own; a checkpoint's when their count differs
        # from the dataset's (an equal count is taken for the dataset's classes)
        own = classes is not None and (
            (cfg.task == "transfer" and not cfg.checkpoint)
            or classes != ctx.state.dataset.num_classes
        )
        if own:
            ctx.say(
                f"[dim]teacher seed {seed}: logits over its own {classes} classes "
                f"(the dataset has {ctx.state.dataset.num_classes or 'none'})[/dim]"
            )
        ctx.state.teachers[seed] = TeacherOutputs(
            digest=model.digest,
            features=outputs["features"],
            logits=logits,
            classes=classes,
            own_classes=own,
            classifier=classifier,  # students of its logits depend on it too
        )
        ctx.state.models.append(
            dataclasses.replace(model, method="teacher", classes=classes, own_classes=own)
        )


def _teacher_logits(classifier_file: Path, features: torch.Tensor, checkpoint: str) -> torch.Tensor:
    """The teacher's logits ``[N, Ct]`` on ``features`` ``[N, Dt]``, from its saved classifier.

    The linear classifier is built at the saved weights' shape ``[Ct, Dt]`` (its own classes,
    whatever the dataset's).
    """
    state = load_checkpoint(classifier_file)
    weight = state.get("weight") if isinstance(state, dict) else None
    bias = state.get("bias") if isinstance(state, dict) else None
    fix = (
        "point teacher.checkpoint at a folder whose classifier.pt belongs to its encoder.pt"
        if checkpoint
        else "delete that teacher folder to retrain it"
    )
    if (
        not isinstance(weight, torch.Tensor)
        or weight.dim() != 2
        or weight.shape[0] < 1
        or not isinstance(bias, torch.Tensor)
        or bias.shape != weight.shape[:1]
    ):
        raise DataError(
            f"teacher classifier '{classifier_file}' is not a linear layer's weights "
            f"(weight [C, D], bias [C]); {fix}"
        )
    if weight.shape[1] != features.shape[1]:
        raise DataError(
            f"teacher classifier '{classifier_file}' takes {weight.shape[1]}-dim features, "
            f"but the teacher encoder gives {features.shape[1]}; {fix}"
        )
    classifier = torch.nn.Linear(weight.shape[1], weight.shape[0])
    classifier.load_state_dict({"weight": weight, "bias": bias})
    with torch.inference_mode():
        logits: torch.Tensor = classifier(features.to(classifier.weight.dtype))
    return logits


def _train_features(ctx: RunContext, encoder: Encoder, seed: int) -> torch.Tensor:
    """The frozen teacher's train-split features ``[N, Dt]``, in the run's precision."""
    with (
        progress_bar(ctx.accelerator.is_main_process, ctx.console) as bar,
        ctx.accelerator.autocast(),
    ):
        job = bar.add_task(f"teacher features seed {seed}", total=None, info="")
        return extract_features(
            encoder,
            ctx.state.dataset.splits["train"],
            device=ctx.accelerator.device,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
            channels_last=ctx.config.runtime.channels_last,
        )


def _teacher_task_data(ctx: RunContext) -> tuple[LoadedDataset, str]:
    """The teacher's own labelled set under ``teacher.task=transfer``, and its data key.

    It is a cached unit beside the run's data.
    """
    source, name = ctx.state.dataset_source, ctx.config.data.name
    if not hasattr(source, "teacher_task_options"):
        raise ConfigError(
            f"teacher.task=transfer: dataset '{name}' has no teacher task of its own; "
            "set teacher.task=probe-labels or give teacher.checkpoint"
        )
    options = source.teacher_task_options(ctx.config.data.options())
    path, key = prepared_cache(ctx, source, options, f"{name}-teacher-task")
    return source.load_teacher_task(path), key


def _loaded_teacher(ctx: RunContext, folder: Path, seed: int) -> ModelRecord:
    """The record of a teacher trained elsewhere (``teacher.checkpoint``).

    Its classifier (over the classes it was trained on) is copied into this run's teacher
    folder, so the cached outputs live with the run.
    """
    checkpoint = folder / "encoder.pt"
    if not checkpoint.is_file():
        raise ConfigError(
            f"teacher.checkpoint: no encoder.pt in '{folder}'; point it at the "
            "teacher folder of an earlier run (e.g. runs/cifar100/teacher/seed0)"
        )
    directory = ctx.run_dir / "teacher" / f"seed{seed}"
    if ctx.accelerator.is_main_process:
        directory.mkdir(parents=True, exist_ok=True)
        if (folder / "classifier.pt").is_file():
            save_atomic(load_checkpoint(folder / "classifier.pt"), directory / "classifier.pt")
        else:  # one copied from an earlier checkpoint would give this encoder its logits
            (directory / "classifier.pt").unlink(missing_ok=True)
    ctx.accelerator.wait_for_everyone()
    digest = file_digest(checkpoint)
    return ModelRecord(
        seed=seed,
        modality=ctx.config.teacher.modality,
        method="teacher",
        role="teacher",
        directory=str(directory),
        encoder=ctx.config.teacher.encoder.name,
        checkpoint=str(checkpoint),
        digest=digest,
        key=digest,
        hparams={"checkpoint": str(checkpoint)},
    )
