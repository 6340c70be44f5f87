"""Stage ``distill``: train every (student modality, method, seed) from the frozen teacher."""

from __future__ import annotations

from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.common import check_modality, encoder_for, trained_encoder_unit
from xmodal.pipelines.state import stage


@stage(
    "distill",
    "distil each student modality with each method",
    needs=("dataset", "dataset_source", "data_key"),
    produces=("models",),
    config=("distill",),
)
def distill(ctx: RunContext) -> None:
    """Train (or reuse) one student per seed, modality and method; each method gets its options.

    The options are ``distill.<options key>`` as loaded, handed on as one object.
    """
    cfg = ctx.config.distill
    for i, modality in enumerate(cfg.students):
        check_modality(ctx, modality, f"distill.students[{i}]")
    models = ctx.state.models
    for seed in ctx.config.seeds:
        teacher = ctx.state.teachers.get(seed)
        for modality in cfg.students:
            for method in cfg.methods:
                models.append(
                    trained_encoder_unit(
                        ctx,
                        ("distill", f"seed{seed}", modality, method),
                        modality=modality,
                        encoder_cfg=encoder_for(modality, cfg.encoder, cfg.encoders),
                        optim=cfg.optim,
                        method_name=method,
                        options=cfg.options_for(method),
                        seed=seed,
                        teacher=teacher,
                        role="student",
                    )
                )
