"""Layer 5: evaluation of frozen encoders (feature extraction, probes, summaries)."""

from xmodal.evaluation.features import extract_features
from xmodal.evaluation.knn_probe import KNNProbe, KNNProbeConfig, KNNResult
from xmodal.evaluation.linear_probe import LinearProbe, LinearProbeConfig, ProbeResult
from xmodal.evaluation.retrieval_probe import RetrievalProbe, RetrievalProbeConfig
from xmodal.evaluation.segmentation_metrics import ConfusionMatrix
from xmodal.evaluation.segmentation_probe import (
    SegmentationProbe,
    SegmentationProbeConfig,
    SegmentationResult,
    extract_feature_maps,
)
from xmodal.evaluation.zero_shot_probe import ZeroShotProbe, ZeroShotProbeConfig, ZeroShotResult

__all__ = [
    "ConfusionMatrix",
    "KNNProbe",
    "KNNProbeConfig",
    "KNNResult",
    "LinearProbe",
    "LinearProbeConfig",
    "ProbeResult",
    "RetrievalProbe",
    "RetrievalProbeConfig",
    "SegmentationProbe",
    "SegmentationProbeConfig",
    "SegmentationResult",
    "ZeroShotProbe",
    "ZeroShotProbeConfig",
    "ZeroShotResult",
    "extract_features",
    "extract_feature_maps",
]
