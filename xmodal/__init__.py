"""xmodal: cross-modal knowledge distillation with WCoRD (Chen et al., CVPR 2021)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_encoder"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import xmodal`` (e.g. for ``xmodal --version``) must not import torch.
    if name == "load_encoder":
        from xmodal.encoders.export import load_encoder

        return load_encoder
    raise AttributeError(f"module 'xmodal' has no attribute '{name}'")
