"""Stage ``probe``: evaluate every trained encoder's frozen features with each probe.

Features are extracted once per checkpoint and cached under its content digest, so changing
only the probe settings re-fits probes without re-extracting.
"""

from __future__ import annotations

from typing import Any

from xmodal.core.config import to_dict
from xmodal.core.registries import PROBES, STAGES
from xmodal.evaluation.features import extract_features
from xmodal.pipelines.context import RunContext
from xmodal.training.checkpoint import load_checkpoint, load_encoder, save_atomic

SPLITS = ("train", "val", "test")


@STAGES.register("probe", "linear probes on frozen features of every encoder")
def probe(ctx: RunContext) -> None:
    cfg = ctx.config.probe
    probes = {name: PROBES.get(name) for name in cfg.probes}
    dataset = ctx.state["dataset"]
    rows: list[dict[str, Any]] = ctx.state.setdefault("rows", [])
    for model in ctx.state.get("models", []):
        name = f"{model['modality']}-{model['method']}"
        for probe_name, probe_cls in probes.items():
            probe_cfg = getattr(cfg, probe_name, None)
            unit = ctx.unit("probe", f"seed{model['seed']}", name, probe_name,
                            inputs={"checkpoint": model["digest"], "data": ctx.state["data_key"],
                                    "probe": probe_name, "config": to_dict(probe_cfg)})
            record = unit.record()
            if record is None:
                feats = _features(ctx, model, dataset)
                result = probe_cls(probe_cfg).evaluate(
                    *[(feats[s], dataset.splits[s].tensors["label"]) for s in SPLITS],
                    num_classes=dataset.num_classes)
                record = unit.finish(to_dict(result))
            for metric in ("accuracy", "mean_class_accuracy"):
                rows.append({"modality": model["modality"], "method": model["method"],
                             "probe": probe_name, "metric": metric, "value": record[metric],
                             "seed": model["seed"], "encoder": model["encoder"],
                             "role": model["role"], "probe_l2": record["l2"],
                             "hparams": model["hparams"]})


def _features(ctx: RunContext, model: dict[str, Any], dataset: Any) -> dict[str, Any]:
    cache = ctx.run_dir / "features" / f"{model['digest']}.pt"
    if cache.is_file():
        return load_checkpoint(cache)
    encoder = load_encoder(model["checkpoint"])
    feats = {s: extract_features(encoder, dataset.splits[s], device=ctx.accelerator.device)
             for s in SPLITS}
    if ctx.accelerator.is_main_process:
        save_atomic(feats, cache)
    return feats
