"""Stage ``classify``: top-1 accuracy on the test split of each model's own classifier.

The compression setting (``cifar100``) evaluates the student as a classifier, not through a
probe: every model trained with a classifier over the dataset's classes (the teacher,
``supervised``, ``kd``, and ``crd`` or ``wcord`` with ``alpha > 0``) is scored with it on the
test images. Models without one (``none``, label-free methods, ``kd`` with ``alpha = 0`` from a
teacher with classes of its own) have no row, nor has a teacher whose classifier is over
classes of its own (a transfer teacher, or a checkpoint trained on another label space). Rows
use the probe stage's layout with ``probe = "classifier"`` and ``metric = "top1"``, so
``report`` averages them over seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xmodal.core.cache import load_checkpoint
from xmodal.core.identity import components
from xmodal.encoders.export import load_encoder
from xmodal.evaluation.features import extract_features
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.state import stage


@stage(
    "classify",
    "top-1 test accuracy of each model's own classifier",
    needs=("dataset", "data_key", "models"),
    produces=("rows",),
)
def classify(ctx: RunContext) -> None:
    """Score every model that has a classifier over the dataset's classes on the test split."""
    test = ctx.state.dataset.splits["test"]
    labels = test.column("label")
    rows: list[dict[str, Any]] = ctx.state.rows
    for model in ctx.state.models:
        classifier_file = Path(model.directory) / "classifier.pt"
        if not classifier_file.is_file() or model.own_classes:
            continue
        unit = ctx.unit(
            "classify",
            f"seed{model.seed}",
            f"{model.modality}-{model.method}",
            inputs={
                "checkpoint": model.digest,
                "data": ctx.state.data_key,
                "classifier": str(classifier_file),
                "components": components(frontend=model.modality, backbone=model.encoder),
            },
        )
        record = unit.record()
        if record is None:
            features = extract_features(
                load_encoder(model.checkpoint),
                test,
                device=ctx.accelerator.device,
                channels_last=ctx.config.runtime.channels_last,
            )
            state = load_checkpoint(classifier_file)
            classifier = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
            classifier.load_state_dict(state)
            with torch.inference_mode():
                predicted = classifier(features).argmax(1)
            record = unit.finish(
                {"top1": float((predicted == labels).float().mean()), "n": len(labels)}
            )
        rows.append(
            {
                "modality": model.modality,
                "method": model.method,
                "probe": "classifier",
                "metric": "top1",
                "value": record["top1"],
                "seed": model.seed,
                "encoder": model.encoder,
                "role": model.role,
                "hparams": model.hparams,
            }
        )
