"""Registered pipeline stages; a pipeline spec lists them by name."""

from xmodal.pipelines.stages import (  # noqa: F401  (importing them registers them)
    classify,
    distill,
    preprocess,
    probe,
    report,
    teacher,
)
