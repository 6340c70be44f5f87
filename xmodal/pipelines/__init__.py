"""Layer 6: pipelines (specs under ``pipelines/``), their stages, config and runner.

The names below load on first use (``from xmodal.pipelines import run_pipeline`` imports the
runner, and torch, then), so that a module of this package, such as the load-time name checks,
can be imported alone. Stages and pipelines register through entry points (``pyproject.toml``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PipelineSpec", "RunResult", "resolve_config", "run_pipeline"]

_LAZY = {
    "PipelineSpec": "xmodal.pipelines.spec",
    "RunResult": "xmodal.pipelines.runner",
    "resolve_config": "xmodal.pipelines.runner",
    "run_pipeline": "xmodal.pipelines.runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xmodal.pipelines' has no attribute '{name}'")
