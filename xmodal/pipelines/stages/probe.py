"""Stage ``probe``: evaluate every trained encoder's frozen features with each probe.

Pooled probes (``linear``, ``knn``: scene classification) read ``[N, D]`` embeddings; pair
probes (``retrieval``) read a student's and its teacher's embeddings; dense probes
(``segmentation``: per-pixel classes) read stage feature maps ``[N, C, h, w]`` and run once per
per-pixel label set the dataset has (e.g. ``seg40``, ``seg13``). Features are extracted once
per checkpoint and cached under its content digest and the identity of the front end and
backbone code that extracts them, so changing only probe settings re-fits probes without
re-extracting; every reuse checks the digest recorded with the cached values (a changed file
is extracted again, with one line saying why), and that digest is part of each probe unit's
key, with the probe's own identity, so results computed from other features or by other probe
code are recomputed. Each result row carries the probe's options (``probe_options``). Text
probes (``zero-shot``) read a CLIP teacher's class text embeddings and each student's saved
objective heads (:mod:`.text_teacher`); a model without them is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xmodal.core.cache import KeyedEntry, read_keyed, save_keyed, value_digest
from xmodal.core.config import fingerprint, to_dict
from xmodal.core.errors import ConfigError, DataError
from xmodal.core.identity import components
from xmodal.core.registry import FRONTENDS, PROBES
from xmodal.data.arrays import Rows
from xmodal.encoders.export import load_encoder
from xmodal.evaluation.features import extract_features
from xmodal.evaluation.segmentation_probe import extract_feature_maps
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.common import layout_key
from xmodal.pipelines.stages.text_teacher import student_heads, teacher_text, teacher_text_problem
from xmodal.pipelines.state import ModelRecord, stage
from xmodal.training.distributed import computed_in_shares, main_process_decides

SPLITS = ("train", "val", "test")
POOLED_METRICS = ("accuracy", "mean_class_accuracy")
DENSE_METRICS = ("mean_iou", "pixel_accuracy", "mean_class_accuracy")  # headline first


@stage(
    "probe",
    "probe the frozen features of every encoder (linear, k-NN, retrieval, ...)",
    needs=("dataset", "data_key", "models"),
    produces=("rows",),
    config=("probe",),
)
def probe(ctx: RunContext) -> None:
    """Fit and score each of ``probe.probes`` on every model's features; appends result rows."""
    cfg = ctx.config.probe
    probes = {name: PROBES.get(name) for name in cfg.probes}
    dataset = ctx.state.dataset
    rows: list[dict[str, Any]] = ctx.state.rows
    device = ctx.accelerator.device
    layout = ctx.config.runtime.channels_last

    def pooled(encoder: Any, split: str) -> Any:  # each process embeds its share of the rows
        data = dataset.splits[split]
        return computed_in_shares(
            lambda rows: extract_features(
                encoder, data, device=device, rows=rows, channels_last=layout
            ),
            len(data),
            ctx.accelerator,
        )

    text_memo: dict[str, Any] = {}  # class text embeddings, once per teacher
    teacher_memo: dict[Path, KeyedEntry] = {}  # teachers' features, for the pair probes
    for model in ctx.state.models:
        name = f"{model.modality}-{model.method}"
        memo: dict[Path, KeyedEntry] = {}  # this model's outputs, read once for all targets
        for probe_name, probe_cls in probes.items():
            probe_cfg = cfg.options_for(probe_name)
            dense = getattr(probe_cls, "consumes_maps", False)
            pairs = getattr(probe_cls, "consumes_pairs", False)  # teacher <-> student probes
            text = getattr(probe_cls, "consumes_text", False)  # class prompts through the heads
            if dense and not getattr(FRONTENDS.get(model.modality), "image_aligned", False):
                continue  # per-pixel labels mean nothing for, e.g., a spectrogram's maps
            if pairs and model.role == "teacher":
                continue  # the teacher against itself
            teacher = _teacher_of(ctx, model, probe_name) if pairs else None
            zero_shot = _text_inputs(ctx, probe_cls(probe_cfg), model, text_memo) if text else None
            if isinstance(zero_shot, str):
                ctx.say(
                    f"[dim]probe {probe_name}: {name} seed {model.seed} skipped ({zero_shot})[/dim]"
                )
                continue
            targets = dataset.dense_labels if dense else {"label": dataset.num_classes}
            for target, num_classes in targets.items():
                label = probe_name if not dense else target
                # the features the probe reads, verified: their content digest keys its results
                if dense:
                    stages = probe_cfg.stages
                    feats = _frozen_entry(
                        ctx,
                        model,
                        f"-maps{'-'.join(str(s) for s in stages)}",
                        memo,
                        _maps_in_shares(ctx, model.modality, stages),
                    )
                else:
                    feats = _frozen_entry(ctx, model, "", memo, pooled)
                pair = _frozen_entry(ctx, teacher, "", teacher_memo, pooled) if teacher else None
                unit = ctx.unit(
                    "probe",
                    f"seed{model.seed}",
                    name,
                    label,
                    inputs={
                        "checkpoint": model.digest,
                        "data": ctx.state.data_key,
                        "probe": probe_name,
                        "target": target,
                        "config": to_dict(probe_cfg),
                        "components": components(probe=probe_name),
                        "features": feats.digest,
                        **(
                            {"teacher": teacher.digest, "teacher_features": pair.digest}
                            if pair is not None and teacher is not None
                            else {}
                        ),
                        **(zero_shot["inputs"] if zero_shot else {}),
                    },
                )
                record = unit.record()
                if record is None:
                    if dense:
                        result = probe_cls(probe_cfg).evaluate_maps(
                            *[(feats.value[s], dataset.splits[s].column(target)) for s in SPLITS],
                            num_classes=num_classes,
                        )
                    elif zero_shot is not None:
                        result = zero_shot["probe"].evaluate_zero_shot(
                            feats.value["test"],
                            dataset.splits["test"].column("label"),
                            zero_shot["classes"](),
                            zero_shot["heads"],
                            zero_shot["names"],
                        )
                    elif pair is not None:
                        result = probe_cls(probe_cfg).evaluate_pairs(pair.value, feats.value)
                    else:
                        result = probe_cls(probe_cfg).evaluate(
                            *[(feats.value[s], dataset.splits[s].column("label")) for s in SPLITS],
                            num_classes=num_classes,
                        )
                    record = unit.finish(to_dict(result))
                for metric in getattr(
                    probe_cls, "metrics", DENSE_METRICS if dense else POOLED_METRICS
                ):
                    rows.append(
                        {
                            "modality": model.modality,
                            "method": model.method,
                            "probe": label,
                            "metric": metric,
                            "value": record[metric],
                            "seed": model.seed,
                            "encoder": model.encoder,
                            "role": model.role,
                            "hparams": model.hparams,
                            **(
                                {"probe_weight_decay": record["weight_decay"]}
                                if dense
                                else {"probe_l2": record["l2"]}
                                if "l2" in record
                                else {}
                            ),
                            "probe_options": to_dict(probe_cfg),  # as the probe ran
                        }
                    )


def _maps_in_shares(ctx: RunContext, modality: str, stages: list[int]) -> Callable[[Any, str], Any]:
    """``extract(encoder, split)``: the stage feature maps ``[N, C, h, w]`` of a split.

    The maps are of the split's ``modality`` inputs; each process computes its share of the rows.
    """
    dataset = ctx.state.dataset

    def extract(encoder: Any, split: str) -> Any:
        data = dataset.splits[split]
        return computed_in_shares(
            lambda rows: extract_feature_maps(
                encoder,
                Rows(data, modality, rows),
                stages,
                batch_size=32,
                device=ctx.accelerator.device,
            ),
            len(data),
            ctx.accelerator,
        )

    return extract


def _teacher_of(ctx: RunContext, model: ModelRecord, probe_name: str) -> ModelRecord:
    """The teacher model record of ``model``'s seed (for probes comparing the two)."""
    for other in ctx.state.models:
        if other.role == "teacher" and other.seed == model.seed:
            return other
    raise ConfigError(
        f"probe '{probe_name}' compares students with their teacher, but no teacher "
        f"of seed {model.seed} is among the encoders; probe a run directory, or "
        "leave this probe out"
    )


def _text_inputs(
    ctx: RunContext, probe: Any, model: ModelRecord, text_memo: dict[str, Any]
) -> dict[str, Any] | str:
    """What a text probe needs for ``model``, or why ``model`` is skipped.

    That is: the probe, the class names, their text vectors ``[C, Dt]`` from the teacher's text
    tower (``classes()``: built only when the probe runs), the student's heads (None for a
    teacher or a pretrained ``xmodal probe`` target: its own space) and the unit inputs they
    add.
    """
    own = model.role in ("teacher", "pretrained")  # CLIP's own zero-shot, no heads
    teacher = (
        model
        if own
        else next(
            (m for m in ctx.state.models if m.role == "teacher" and m.seed == model.seed),
            None,
        )
    )
    if teacher is None:
        return f"no teacher of seed {model.seed} among the encoders"
    heads, inputs = None, {"teacher": teacher.key}
    if not own:
        found = student_heads(model)
        if isinstance(found, str):
            return found
        heads, inputs["heads"] = found
    dataset = ctx.state.dataset
    try:
        names = probe.class_names(dataset.class_names, dataset.num_classes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    why = teacher_text_problem(teacher)
    if why:
        return why
    return {
        "probe": probe,
        "names": names,
        "heads": heads,
        "inputs": inputs,
        "classes": lambda: teacher_text(ctx, teacher, names, probe.config.templates, text_memo),
    }


def _frozen_entry(
    ctx: RunContext,
    model: ModelRecord,
    tag: str,
    memo: dict[Path, KeyedEntry],
    extract: Callable[[Any, str], Any],
    everywhere: bool = True,
) -> KeyedEntry:
    """``{split: extract(encoder, split)}`` of the frozen encoder and its content digest.

    Computed once per checkpoint: from ``memo``, else from ``features/<key>.pt`` when it still
    has the digest recorded with it, else extracted and saved there (a changed or older file:
    one line saying why). ``everywhere``: called by every process alike (then they agree on
    reuse, and ``extract`` may share the work); False from code that runs on the main process
    alone.

    Raises:
        DataError: the features hold NaN or inf (the encoder's training diverged), naming its
            folder and the setting to lower.
    """
    key = fingerprint(
        {
            "checkpoint": model.digest,
            "data": ctx.state.data_key,
            "modality": model.modality,
            "outputs": tag,
            "splits": SPLITS,
            # the code that extracts them (an untrained encoder's weights do not change
            # with its forward pass)
            "components": components(frontend=model.modality, backbone=model.encoder),
            **layout_key(ctx),
        }
    )
    cache = ctx.run_dir / "features" / f"{key}.pt"
    if cache not in memo:
        entry, why = read_keyed(cache, key)
        # every process extracts its share, so all must agree on reuse (the main process decides)
        reuse = entry is not None
        if everywhere and main_process_decides(reuse, ctx.accelerator) and not reuse:
            entry, why = read_keyed(cache, key)  # written by the main process meanwhile
        if entry is None:
            if why != "missing":
                ctx.say(f"features: {why}; extracting them again")
            encoder = load_encoder(model.checkpoint)
            value = {split: extract(encoder, split) for split in SPLITS}
            if ctx.accelerator.is_main_process:
                digest = save_keyed(value, cache, key)
            else:
                digest = value_digest(value)
            if everywhere:  # the main process's digest keys the probe units
                digest = main_process_decides(digest, ctx.accelerator)
            entry = KeyedEntry(value, digest)
        _check_finite(entry.value, model, cache)
        memo[cache] = entry
    return memo[cache]


def _check_finite(value: dict[str, Any], model: ModelRecord, cache: Path) -> None:
    """DataError when a split's features hold NaN or inf: the encoder behind them diverged."""
    for split, features in value.items():
        if isinstance(features, torch.Tensor) and not torch.isfinite(features).all():
            setting = {"teacher": "teacher.optim.lr", "student": "distill.optim.lr"}.get(
                model.role, "its learning rate"
            )
            raise DataError(
                f"{model.modality} {model.method} seed {model.seed}: its "
                f"{split} features ('{cache}') contain NaN or inf, so its training "
                f"diverged; lower {setting} and delete '{model.directory}' to "
                "retrain it"
            )
