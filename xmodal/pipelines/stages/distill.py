"""Stage ``distill``: train every (student modality, method, seed) from the frozen teacher."""

from __future__ import annotations

from xmodal.core.registries import LOSSES, STAGES
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.common import check_modality, encoder_for, trained_encoder_unit


@STAGES.register("distill", "distil each student modality with each method")
def distill(ctx: RunContext) -> None:
    cfg = ctx.config.distill
    for i, modality in enumerate(cfg.students):
        check_modality(ctx, modality, f"distill.students[{i}]")
    methods = [LOSSES.get(name) for name in cfg.methods]  # fail on a typo before any training
    models = ctx.state.setdefault("models", [])
    for seed in ctx.config.seeds:
        teacher = ctx.state.get("teachers", {}).get(seed)
        for modality in cfg.students:
            for method in methods:
                method_cfg = getattr(cfg, method.config_key) if method.config_key else None
                models.append(trained_encoder_unit(
                    ctx, ("distill", f"seed{seed}", modality, method.name), modality=modality,
                    encoder_cfg=encoder_for(modality, cfg.encoder, cfg.encoders),
                    optim=cfg.optim, method_name=method.name,
                    method_cfg=method_cfg, seed=seed, teacher=teacher, role="student"))
