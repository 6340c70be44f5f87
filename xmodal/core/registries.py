"""The project's registries, one per pluggable kind, each extendable by entry points.

Layers register into these at import time; ``xmodal list`` prints them. Third-party packages
declare e.g. ``[project.entry-points."xmodal.encoders"] mynet = "mypkg.nets:build_mynet"``.
"""

from __future__ import annotations

from typing import Any

from xmodal.core.registry import Registry

MODALITIES: Registry[Any] = Registry("modalities", "xmodal.modalities")
ENCODERS: Registry[Any] = Registry("encoders", "xmodal.encoders")
DATASETS: Registry[Any] = Registry("datasets", "xmodal.datasets")
LOSSES: Registry[Any] = Registry("losses", "xmodal.losses", noun="method")  # distill.methods
PROBES: Registry[Any] = Registry("probes", "xmodal.probes")
STAGES: Registry[Any] = Registry("stages", "xmodal.stages")
PIPELINES: Registry[Any] = Registry("pipelines", "xmodal.pipelines")

ALL: dict[str, Registry[Any]] = {
    r.kind: r for r in (ENCODERS, LOSSES, DATASETS, PROBES, PIPELINES, MODALITIES, STAGES)
}
