"""Stage ``distill``: train every (student modality, method, seed) from the frozen teacher."""

from __future__ import annotations

from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.common import check_modality, encoder_for, trained_encoder_unit
from xmodal.pipelines.state import stage
from xmodal.training.train import TrainJob


@stage(
    "distill",
    "distil each student modality with each method",
    needs=("dataset", "dataset_source", "data_key"),
    produces=("models",),
    config=("distill",),
)
def distill(ctx: RunContext) -> None:
    """Train (or reuse) one student per seed, modality and method; each method gets its options.

    The options are ``distill.<options key>`` as loaded: one object, put into the training job
    here and kept by the objective that the job builds.
    """
    cfg = ctx.config.distill
    for i, modality in enumerate(cfg.students):
        check_modality(ctx, modality, f"distill.students[{i}]")
    models = ctx.state.models
    for seed in ctx.config.seeds:
        teacher = ctx.state.teachers.get(seed)
        for modality in cfg.students:
            for method in cfg.methods:
                job = TrainJob(
                    method,
                    cfg.options_for(method),
                    ctx.state.dataset,
                    seed,
                    teacher=teacher,
                    description=f"student {modality} {method} seed {seed}",
                )
                models.append(
                    trained_encoder_unit(
                        ctx,
                        ("distill", f"seed{seed}", modality, method),
                        job,
                        modality=modality,
                        encoder_cfg=encoder_for(modality, cfg.encoder, cfg.encoders),
                        optim=cfg.optim,
                        role="student",
                    )
                )
