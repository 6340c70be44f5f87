"""Layer 5: evaluation of frozen encoders (feature extraction, probes, summaries)."""

from xmodal.evaluation.features import extract_features
from xmodal.evaluation.linear_probe import LinearProbe, LinearProbeConfig, ProbeResult
from xmodal.evaluation.segmentation_metrics import ConfusionMatrix
from xmodal.evaluation.segmentation_probe import (SegmentationProbe, SegmentationProbeConfig,
                                                  SegmentationResult, extract_feature_maps)

__all__ = ["ConfusionMatrix", "LinearProbe", "LinearProbeConfig", "ProbeResult",
           "SegmentationProbe", "SegmentationProbeConfig", "SegmentationResult",
           "extract_features", "extract_feature_maps"]
