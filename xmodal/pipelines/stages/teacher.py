"""Stage ``teacher``: train the teacher with labels, then cache its frozen train-split features."""

from __future__ import annotations

import torch

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
        features_file = ctx.run_dir / "teacher" / f"seed{seed}" / f"features-{model['digest']}.pt"
        if not features_file.is_file():
            encoder = load_encoder(model["checkpoint"])
            feats = extract_features(encoder, ctx.state["dataset"].splits["train"],
                                     device=ctx.accelerator.device)
            if ctx.accelerator.is_main_process:
                save_atomic(feats, features_file)
            ctx.accelerator.wait_for_everyone()
        features = load_checkpoint(features_file)
        if not torch.isfinite(features).all():
            raise ValueError(f"teacher features in {features_file} contain NaN or inf")
        ctx.state["teachers"][seed] = {"key": model["digest"], "features": features}
        ctx.state["models"].append(model)
