"""Layer 5: evaluation of frozen encoders (feature extraction, probes, summaries)."""

from xmodal.evaluation.features import extract_features
from xmodal.evaluation.linear_probe import LinearProbe, LinearProbeConfig, ProbeResult

__all__ = ["LinearProbe", "LinearProbeConfig", "ProbeResult", "extract_features"]
