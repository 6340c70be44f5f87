"""xmodal: cross-modal knowledge distillation with WCoRD (Chen et al., CVPR 2021).

``import xmodal`` gives every registry and the helpers below. Components, built-in or not, are
declared by entry points (xmodal's own in its ``pyproject.toml``) and imported when first used,
so ``import xmodal`` alone imports neither torch nor any layer (``xmodal --version`` stays
fast).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "BACKBONES",
    "DATASETS",
    "FRONTENDS",
    "METHODS",
    "PIPELINES",
    "PROBES",
    "STAGES",
    "create_encoder",
    "list_components",
    "load_encoder",
]

_LAZY = {
    "load_encoder": "xmodal.encoders.export",
    "create_encoder": "xmodal.encoders.base",
    **{
        name: "xmodal.core.registry"
        for name in (
            "list_components",
            "BACKBONES",
            "DATASETS",
            "FRONTENDS",
            "METHODS",
            "PIPELINES",
            "PROBES",
            "STAGES",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xmodal' has no attribute '{name}'")
