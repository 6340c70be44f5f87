"""Layer 5: evaluation of frozen encoders (feature extraction, probes, summaries)."""

from xmodal.core.deprecation import former_names
from xmodal.evaluation.features import extract_features
from xmodal.evaluation.knn_probe import KNNProbe, KNNProbeOptions, KNNResult
from xmodal.evaluation.linear_probe import LinearProbe, LinearProbeOptions, ProbeResult
from xmodal.evaluation.retrieval_probe import RetrievalProbe, RetrievalProbeOptions
from xmodal.evaluation.segmentation_metrics import ConfusionMatrix
from xmodal.evaluation.segmentation_probe import (
    SegmentationProbe,
    SegmentationProbeOptions,
    SegmentationResult,
    extract_feature_maps,
)
from xmodal.evaluation.zero_shot_probe import ZeroShotProbe, ZeroShotProbeOptions, ZeroShotResult

__all__ = [
    "ConfusionMatrix",
    "KNNProbe",
    "KNNProbeOptions",
    "KNNResult",
    "LinearProbe",
    "LinearProbeOptions",
    "ProbeResult",
    "RetrievalProbe",
    "RetrievalProbeOptions",
    "SegmentationProbe",
    "SegmentationProbeOptions",
    "SegmentationResult",
    "ZeroShotProbe",
    "ZeroShotProbeOptions",
    "ZeroShotResult",
    "extract_features",
    "extract_feature_maps",
]

#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(
    __name__,
    {
        "KNNProbeConfig": "KNNProbeOptions",
        "LinearProbeConfig": "LinearProbeOptions",
        "RetrievalProbeConfig": "RetrievalProbeOptions",
        "SegmentationProbeConfig": "SegmentationProbeOptions",
        "ZeroShotProbeConfig": "ZeroShotProbeOptions",
    },
    globals(),
)
