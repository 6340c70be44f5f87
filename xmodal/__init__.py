"""xmodal: cross-modal knowledge distillation with WCoRD (Chen et al., CVPR 2021)."""

__version__ = "0.1.0"
