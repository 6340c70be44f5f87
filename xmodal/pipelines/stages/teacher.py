"""Stage ``teacher``: train the teacher with labels, then cache its frozen train-split features
``[N, Dt]`` and logits ``[N, C]`` (inputs of feature- and logit-based distillation)."""

from __future__ import annotations

from pathlib import Path

import torch

from xmodal.core.errors import DataError
from xmodal.core.registries import STAGES
from xmodal.evaluation.features import extract_features
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.common import check_modality, trained_encoder_unit
from xmodal.training.checkpoint import load_checkpoint, load_encoder, save_atomic


@STAGES.register("teacher", "train the teacher encoder and cache its features")
def teacher(ctx: RunContext) -> None:
    cfg = ctx.config.teacher
    check_modality(ctx, cfg.modality, "teacher.modality")
    ctx.state["teachers"] = {}
    ctx.state.setdefault("models", [])
    for seed in ctx.config.seeds:
        model = trained_encoder_unit(ctx, ("teacher", f"seed{seed}"), modality=cfg.modality,
                                     encoder_cfg=cfg.encoder, optim=cfg.optim,
                                     method_name="supervised", method_cfg=None, seed=seed,
                                     teacher=None, role="teacher")
        model["method"] = "teacher"
        directory = Path(model["directory"])
        outputs_file = directory / f"outputs-{model['digest']}.pt"
        if not ctx.agree(outputs_file.is_file()):
            encoder = load_encoder(model["checkpoint"])
            features = extract_features(encoder, ctx.state["dataset"].splits["train"],
                                        device=ctx.accelerator.device)
            outputs = {"features": features}
            if (directory / "classifier.pt").is_file():  # absent for a frozen (untrained) teacher
                classifier = torch.nn.Linear(features.shape[1], ctx.state["dataset"].num_classes)
                classifier.load_state_dict(load_checkpoint(directory / "classifier.pt"))
                with torch.inference_mode():
                    outputs["logits"] = classifier(features)
            if ctx.accelerator.is_main_process:
                save_atomic(outputs, outputs_file)
            ctx.accelerator.wait_for_everyone()
        outputs = load_checkpoint(outputs_file)
        for name, tensor in outputs.items():
            if not torch.isfinite(tensor).all():
                raise DataError(f"teacher {name} in {outputs_file} contain NaN or inf: the teacher "
                                "diverged; lower teacher.optim.lr and delete that folder")
        ctx.state["teachers"][seed] = {"key": model["digest"], **outputs}
        ctx.state["models"].append(model)
