"""The run config: every setting of a pipeline run, typed and validated.

Defaults here are the library's; each pipeline ships a YAML under ``configs/`` that overrides
some of them, and users override further with ``--config FILE`` and ``--set key=value``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal

from xmodal.data.cifar100_source import CIFAR100Config
from xmodal.data.nyu.config import NYUDepthConfig
from xmodal.data.scenes import ScenesConfig
from xmodal.evaluation.knn_probe import KNNProbeConfig
from xmodal.evaluation.linear_probe import LinearProbeConfig
from xmodal.evaluation.retrieval_probe import RetrievalProbeConfig
from xmodal.evaluation.segmentation_probe import SegmentationProbeConfig
from xmodal.objectives.baselines.config import (CRDConfig, FitNetConfig, KDConfig, PKTConfig,
                                                 RKDConfig)
from xmodal.objectives.methods import WCoRDConfig
from xmodal.training.optim import OptimConfig


@dataclass
class DataConfig:
    """Attributes:
        name: registered dataset (``xmodal list datasets``).
        scenes: options of the embedded ``scenes`` dataset.
        nyu_depth: options of ``nyu-depth`` (NYU-Depth V2 labeled file).
        cifar100: options of ``cifar100`` (the compression setting).
    """

    name: str = "scenes"
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    nyu_depth: NYUDepthConfig = field(default_factory=NYUDepthConfig)
    cifar100: CIFAR100Config = field(default_factory=CIFAR100Config)

    def options(self) -> Any:
        """The options section of the selected dataset."""
        return getattr(self, self.name.replace("-", "_"), None)


@dataclass
class EncoderConfig:
    """Attributes:
        name: registered backbone (``xmodal list encoders``).
        kwargs: extra backbone arguments, e.g. ``{pretrained: imagenet}`` for torchvision nets.
    """

    name: str = "resnet8"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TeacherConfig:
    """The teacher: trained with labels on ``modality`` (frozen during distillation).

    Attributes:
        checkpoint: a folder with a trained teacher's ``encoder.pt`` (and ``classifier.pt`` for
            logit-based methods), e.g. ``runs/cifar100/teacher/seed0`` of an earlier run: used
            for every seed instead of training one. Empty (default): train it.
    """

    modality: str = "rgb"
    checkpoint: str = ""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class DistillConfig:
    """Attributes:
        students: student modalities, each distilled from the teacher.
        methods: registered methods (``xmodal list losses``); ``none`` and ``supervised`` are
            the floor and the upper reference.
        encoder: the student backbone.
        encoders: per-modality student backbones that replace ``encoder`` for that modality,
            e.g. ``{points: {name: pointnet, kwargs: {width: 2}}}`` (give ``name``: it
            defaults to ``resnet8`` as everywhere). A modality without one whose front end
            cannot feed ``encoder`` (a point cloud into a 2-D CNN) gets its front end's
            ``default_backbone`` (``points``: ``pointnet``) with default options.
        optim: student training.
        wcord: WCoRD hyperparameters (also used by ``wcord-global``/``wcord-local``).
        kd, fitnet, crd, rkd, pkt: hyperparameters of the baselines of the same names.
    """

    students: list[str] = field(default_factory=lambda: ["depth", "audio"])
    methods: list[str] = field(default_factory=lambda: ["none", "supervised", "wcord"])
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    wcord: WCoRDConfig = field(default_factory=WCoRDConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    fitnet: FitNetConfig = field(default_factory=FitNetConfig)
    crd: CRDConfig = field(default_factory=CRDConfig)
    rkd: RKDConfig = field(default_factory=RKDConfig)
    pkt: PKTConfig = field(default_factory=PKTConfig)


@dataclass
class ProbeConfig:
    """Attributes:
        probes: registered probes to run (``xmodal list probes``).
        linear: linear-probe settings (pooled features -> scene class).
        knn: k-NN probe settings (pooled features -> scene class, no fitting).
        retrieval: cross-modal retrieval settings (student <-> teacher test embeddings).
        segmentation: per-pixel linear probe settings (feature maps -> semantic classes);
            runs once per per-pixel label set of the dataset (NYU: ``seg40``, ``seg13``).
    """

    probes: list[str] = field(default_factory=lambda: ["linear"])
    linear: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    knn: KNNProbeConfig = field(default_factory=KNNProbeConfig)
    retrieval: RetrievalProbeConfig = field(default_factory=RetrievalProbeConfig)
    segmentation: SegmentationProbeConfig = field(default_factory=SegmentationProbeConfig)


#: the Python package each tracker needs
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "aim": "aim"}


@dataclass
class RuntimeConfig:
    """Attributes:
        mixed_precision: Accelerate's ``no``, ``bf16`` or ``fp16``.
        cpu: force CPU even where a GPU exists.
        threads: torch intra-op threads (0 = torch's default).
        checkpoint_every: also save the training state every this many optimiser steps inside
            an epoch (0 = at the end of each epoch only); a killed run resumes from there.
        log_with: experiment trackers, through Accelerate: ``tensorboard``, ``wandb``,
            ``mlflow``, ``aim``; each logs every loss term and the learning rate per step, and
            the probe results at the end (files under ``<run>/logs``).
    """

    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    cpu: bool = False
    threads: int = 0
    checkpoint_every: int = 0
    log_with: list[Literal["tensorboard", "wandb", "mlflow", "aim"]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        for tracker in self.log_with:
            if importlib.util.find_spec(TRACKER_PACKAGES[tracker]) is None:
                raise ValueError(f"log_with: '{tracker}' needs the package "
                                 f"'{TRACKER_PACKAGES[tracker]}': pip install {TRACKER_PACKAGES[tracker]}")


@dataclass
class RunConfig:
    """Attributes:
        pipeline: the pipeline this config belongs to.
        seeds: training seeds; results report mean and standard deviation over them.
    """

    pipeline: str = "scenes"
    seeds: list[int] = field(default_factory=lambda: [0])
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
