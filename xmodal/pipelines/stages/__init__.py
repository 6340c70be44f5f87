"""Registered pipeline stages; a pipeline spec lists them by name."""

from xmodal.pipelines.stages import classify, distill, preprocess, probe, report, teacher  # noqa: F401
