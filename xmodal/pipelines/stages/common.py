"""Helpers shared by the training stages: build, train and save one encoder as a cached unit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

import xmodal
from xmodal.core.cache import atomic_output, file_digest, save_atomic
from xmodal.core.config import fingerprint, to_dict
from xmodal.core.errors import ConfigError
from xmodal.core.identity import components
from xmodal.core.records import write_json_atomic
from xmodal.core.registry import METHODS
from xmodal.data.source import LoadedDataset, dataset_modalities
from xmodal.encoders.base import Encoder, backbone_for, create_encoder
from xmodal.encoders.export import META_FILE, WEIGHTS_FILE, export_encoder, save_encoder
from xmodal.evaluation import report as report_files
from xmodal.objectives.shared_heads import HEADS_FILE, heads_state
from xmodal.pipelines.config import EncoderConfig
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.state import ModelRecord
from xmodal.training.optim import OptimConfig
from xmodal.training.train import (
    TeacherOutputs,
    TrainJob,
    TrainOutputs,
    TrainSetup,
    feature_standardisation,
    train_encoder,
)


def frontend_options(
    ctx: RunContext, modality: str, dataset: LoadedDataset | None = None
) -> dict[str, Any]:
    """The front end's options for ``modality``.

    As configured (``frontends.<modality>``), then the dataset's facts about its data (e.g. the
    audio sample rate), which win.
    """
    options = ctx.config.frontends.options_for(modality)
    dataset = dataset if dataset is not None else ctx.state.dataset
    return {
        **(to_dict(options) if options is not None else {}),
        **dataset.frontend_kwargs.get(modality, {}),
    }


def build_encoder(cfg: EncoderConfig, modality: str, frontend: dict[str, Any]) -> Encoder:
    """The backbone ``cfg`` with its options behind ``modality``'s front end with ``frontend``."""
    return create_encoder(cfg.name, modality, frontend, **cfg.options_dict())


def encoder_for(
    modality: str, cfg: EncoderConfig, overrides: dict[str, EncoderConfig] | None = None
) -> EncoderConfig:
    """The backbone config that encodes ``modality``.

    Its entry in ``overrides`` (e.g. ``distill.encoders``), else ``cfg`` when that backbone
    takes the front end's layout, else the front end's ``default_backbone`` with default
    options (``points``: ``pointnet``, since a 2-D CNN cannot take ``[B, C, N]``; see
    :func:`~xmodal.encoders.base.backbone_for`).
    """
    if overrides and modality in overrides:
        return overrides[modality]
    name = backbone_for(modality, cfg.name)
    return cfg if name == cfg.name else EncoderConfig(name=name)


def check_modality(ctx: RunContext, modality: str, key: str) -> None:
    """Raise ConfigError (naming config ``key``) when the dataset has no ``modality``."""
    available = dataset_modalities(ctx.state.dataset_source, ctx.config.data.options())
    if modality not in available:
        raise ConfigError(
            f"{key}: dataset '{ctx.config.data.name}' has no modality '{modality}' "
            f"(it has {', '.join(available)})"
        )


#: the last training batch's transport plan ``[B, B]`` of an OT objective (for the report)
TRANSPORT_PLAN = report_files.TRANSPORT_PLAN
#: the per-epoch training history (for the report)
HISTORY = report_files.HISTORY

#: per-epoch training state of an unfinished unit (xmodal.training.resume)
TRAIN_STATE = "train-state.pt"


def layout_key(ctx: RunContext) -> dict[str, bool]:
    """``{"channels_last": True}`` when ``runtime.channels_last`` is on, else nothing.

    For the keys of units that compute with it: on CPU it changes results by more than rounding
    (see :func:`~xmodal.encoders.memory_format.channels_last`), so an opt-in run recomputes
    rather than mixing layouts, while keys of the default layout stay as they were.
    """
    return {"channels_last": True} if ctx.config.runtime.channels_last else {}


def trained_encoder_unit(
    ctx: RunContext,
    parts: tuple[str, ...],
    job: TrainJob,
    *,
    modality: str,
    encoder_cfg: EncoderConfig,
    optim: OptimConfig,
    role: str,
    data_key: str | None = None,
) -> ModelRecord:
    """Train (or reuse) one encoder on ``job``; returns its record for the stages after.

    ``job`` is handed to :func:`~xmodal.training.train.train_encoder` as the stage built it.
    ``data_key``: the key of ``job.dataset`` when it is not the run's (a transfer teacher's set).
    """
    method = METHODS.get(job.method)
    data_key = data_key if data_key is not None else ctx.state.data_key
    needs = method.needs_for(job.options) if method.trains else frozenset()
    uses_teacher = bool(needs & {"teacher", "teacher_logits"})
    teacher = job.teacher
    if uses_teacher and teacher is None:
        raise ConfigError(
            f"method '{job.method}' learns from a teacher, but no teacher of seed {job.seed} "
            "was made before it; put the 'teacher' stage before it in the pipeline"
        )
    frontend = frontend_options(ctx, modality, job.dataset)
    inputs = {
        "data": data_key,
        "modality": modality,
        "encoder": {"name": encoder_cfg.name, "options": encoder_cfg.options_dict()},
        "frontend": frontend,
        "pretrained": _pretrained_digest(encoder_cfg),
        "method": job.method,
        "seed": job.seed,
        "optim": to_dict(optim) if method.trains else None,
        # settings that change the numbers; ones that do not (threads) stay out
        "mixed_precision": ctx.config.runtime.mixed_precision if method.trains else None,
        **layout_key(ctx),
        "hparams": method.hparams_of(job.options),
        "teacher": teacher.digest if teacher is not None and uses_teacher else None,
        # the code it runs: a new version or an edited source recomputes it
        "components": components(frontend=modality, backbone=encoder_cfg.name, method=job.method),
    }
    if "teacher_logits" in needs and teacher is not None and teacher.classifier:
        # a replaced classifier.pt beside an unchanged encoder.pt gives other logits
        inputs["teacher_classifier"] = teacher.classifier
    unit = ctx.unit(*parts, inputs=inputs)
    checkpoint = unit.directory / "encoder.pt"
    done = unit.record(files=[checkpoint.name])
    if done is None:
        set_seed(job.seed)
        encoder = build_encoder(encoder_cfg, modality, frontend)
        result = train_encoder(
            encoder,
            job,
            TrainSetup(
                optim,
                ctx.accelerator,
                optim_key="teacher.optim" if role == "teacher" else "distill.optim",
                num_workers=ctx.config.data.num_workers,
                channels_last=ctx.config.runtime.channels_last,
            ),
            TrainOutputs(
                state_path=unit.directory / TRAIN_STATE,
                state_key=unit.key,
                checkpoint_every=ctx.config.runtime.checkpoint_every,
                log_prefix="/".join(parts),
                console=ctx.console,
            ),
        )
        history = result.history
        if ctx.accelerator.is_main_process:
            (unit.directory / "classifier.pt").unlink(missing_ok=True)  # from earlier inputs
            classifier = getattr(result.objective, "classifier", None)
            if isinstance(classifier, torch.nn.Linear) and history:  # a trained one gives logits
                save_atomic(classifier.state_dict(), unit.directory / "classifier.pt")
            save_heads(
                result.objective,
                job.method,
                teacher if "teacher" in needs else None,
                unit.directory / HEADS_FILE,
            )
            options = encoder_cfg.options_dict()
            save_encoder(
                encoder,
                checkpoint,
                encoder_cfg.name,
                options,
                frontend,
                extra={"method": job.method},
            )
            export_encoder(
                encoder,
                unit.directory,
                encoder_cfg.name,
                options,
                frontend,
                xmodal.__version__,
                fingerprint(to_dict(ctx.config)),
                extra={"method": job.method, "role": role, "seed": job.seed},
            )
            save_transport_plan(result.objective, unit.directory / TRANSPORT_PLAN)
            write_json_atomic(unit.directory / HISTORY, history)
        ctx.accelerator.wait_for_everyone()
        # done.json vouches for every file a later stage or user reads, the export and the
        # report's inputs included
        saved = [
            name
            for name in (
                checkpoint.name,
                "classifier.pt",
                HEADS_FILE,
                WEIGHTS_FILE,
                META_FILE,
                HISTORY,
                TRANSPORT_PLAN,
            )
            if (unit.directory / name).is_file()
        ]
        done = unit.finish(
            {"checkpoint": checkpoint.name, "final": history[-1] if history else {}}, files=saved
        )
        if ctx.accelerator.is_main_process:  # finished: the resume state has served its purpose
            (unit.directory / TRAIN_STATE).unlink(missing_ok=True)
    else:
        ctx.say(f"[dim]{job.description}: cached[/dim]")
    return ModelRecord(
        seed=job.seed,
        modality=modality,
        method=job.method,
        role=role,
        directory=str(unit.directory),
        encoder=encoder_cfg.name,
        checkpoint=str(checkpoint),
        digest=done["files"][checkpoint.name],
        key=unit.key,
        hparams=inputs["hparams"],
        teacher=inputs["teacher"],
    )


def save_heads(
    objective: Any, method_name: str, teacher: TeacherOutputs | None, path: Path
) -> None:
    """Save ``objective``'s teacher and student heads to ``path`` (``heads.pt``).

    With them goes the standardisation its teacher head was trained behind (of
    ``teacher.features``, the raw train features). A stale file is removed when there are
    none (no heads, nothing trained).
    """
    path.unlink(missing_ok=True)  # from earlier inputs
    if objective is None or teacher is None or teacher.features is None:
        return
    features = teacher.features.float()
    mean, std = feature_standardisation(features)
    state = heads_state(objective, method_name, mean, std, float(features.norm(dim=1).mean()))
    if state is not None:
        save_atomic(state, path)


def _pretrained_digest(cfg: EncoderConfig) -> str | None:
    """Content digest of the local weights the encoder's options name (a replaced file retrains).

    Every option that is the path of a file, or of a folder (every file in it; also
    open_clip's ``local-dir:FOLDER``), such as ``pretrained``, timm's ``weights`` or hf's
    ``model``; None when no option names one.
    """
    digests = {}
    for key, value in sorted(cfg.options_dict().items()):
        if not isinstance(value, str) or not value:
            continue
        path = Path(
            value.split(":", 1)[1] if value.startswith("local-dir:") else value
        ).expanduser()
        if path.is_file():
            digests[key] = file_digest(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            digests[key] = fingerprint({str(p.relative_to(path)): file_digest(p) for p in files})
    if not digests:
        return None
    if list(digests) == ["pretrained"]:  # a torchvision .pth alone: its digest, as in earlier runs
        return digests["pretrained"]
    return fingerprint(digests)


def save_transport_plan(objective: torch.nn.Module | None, path: Any) -> None:
    """Save the plan of the objective's last local OT solve as ``.npy``, if it has one.

    The plan ``[B, B]`` has teacher rows and student columns (WCoRD's ``last_transport``); a
    stale file from earlier inputs is removed.
    """
    import numpy as np

    Path(path).unlink(missing_ok=True)
    for module in objective.modules() if objective is not None else ():
        transport = getattr(module, "last_transport", None)
        if transport is not None:
            plan = transport.plan.detach().float().cpu()
            with atomic_output(path) as tmp, open(tmp, "wb") as f:
                np.save(f, plan.reshape(-1, *plan.shape[-2:])[0].numpy())
            return
