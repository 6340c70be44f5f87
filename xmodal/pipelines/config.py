"""The run config: every setting of a pipeline run, typed and validated.

Components are named here and own their options: each registered dataset, method, probe, front
end and backbone declares its options dataclass beside its code, and the sections that select
them (:class:`~xmodal.core.config.ComponentSection`) hold those options under the component's
name, so ``--set distill.wcord.tau=0.1`` and a plugin's ``--set distill.mine.x=1`` are checked
alike. Defaults here are the library's; each pipeline ships a YAML under ``configs/`` that
overrides some of them, and users override further with ``--config FILE`` and ``--set``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal

from xmodal.core.checks import at_least, require
from xmodal.core.config import (
    COMPONENT_OPTIONS,
    ComponentSection,
    from_dict,
    parse_override,
    to_dict,
)
from xmodal.core.errors import ConfigError
from xmodal.core.registry import (
    BACKBONES,
    DATASETS,
    FRONTENDS,
    METHODS,
    PROBES,
)
from xmodal.training.optim import OptimConfig


@dataclass
class DataConfig(ComponentSection):
    """The dataset and how its training batches are read (``data``).

    Attributes:
        name: registered dataset (``xmodal list datasets``); its options sit under its name
            (``data.scenes``, ``data.nyu_depth``, ``data.cifar100``, ``data.paired``, a
            plugin's).
        num_workers: DataLoader workers reading training batches from the cache (0: the main
            process reads them); the data order does not depend on it.
    """

    components = DATASETS
    name: str = "scenes"
    num_workers: int = 0
    by_name: dict[str, Any] = field(default_factory=dict, metadata=COMPONENT_OPTIONS)

    def __post_init__(self) -> None:
        require(self, {"num_workers": at_least(0)})

    def options(self) -> Any:
        """The options of the selected dataset."""
        return self.options_for(self.name)


@dataclass
class EncoderConfig(ComponentSection):
    """A backbone and its options (``teacher.encoder``, ``distill.encoder``...).

    Attributes:
        name: registered backbone (``xmodal list backbones``); its options sit under its name
            (``{name: pointnet, pointnet: {width: 2}}``), checked against the options it
            declares (its ``options`` dataclass, else its factory's keyword arguments) when the
            config loads, each error naming the key's full path
            (``distill.encoders.points.pointnet.width``). The former spelling
            ``{name: pointnet, kwargs: {width: 2}}`` is read for one more release, with a
            deprecation warning.
    """

    components = BACKBONES
    former_options_key = "kwargs"
    name: str = "resnet8"
    by_name: dict[str, Any] = field(default_factory=dict, metadata=COMPONENT_OPTIONS)

    @classmethod
    def of(cls, name: str, **options: Any) -> EncoderConfig:
        """Backbone ``name`` with ``options``, checked as in a config (``of("pointnet", width=2)``).

        Raises:
            ConfigError: an unknown option or a bad value, naming its key.
        """
        return from_dict(cls, {"name": name, BACKBONES.options_key(name): options})

    def options(self) -> Any:
        """The options of the selected backbone (its defaults where none are set), or None."""
        return self.options_for(self.name)

    def options_dict(self) -> dict[str, Any]:
        """:meth:`options` as plain keyword arguments of the backbone's factory."""
        options = self.options()
        return to_dict(options) if options is not None else {}


@dataclass
class TeacherConfig:
    """The teacher: trained with labels on ``modality`` (frozen during distillation).

    Attributes:
        task: what the teacher is trained on. ``probe-labels``: the distillation data's own
            labels, which the probes score (an oracle teacher). ``transfer``: a separate set
            that the dataset generates for it, with another label space (``scenes``: new scenes
            labelled by their dominant object category), so the teacher never sees the
            probe's labels nor the distillation images. Its classifier and logits stay over
            its own classes; ``kd`` and ``wcord.beta`` read them through a student head of
            their size (the dataset's classes keep a classifier of their own).
        checkpoint: a folder with a trained teacher's ``encoder.pt`` (and ``classifier.pt`` for
            logit-based methods, over whatever classes it was trained on), e.g.
            ``runs/cifar100/teacher/seed0`` of an earlier run: used for every seed instead of
            training one. Empty (default): train it.
    """

    modality: str = "rgb"
    task: Literal["probe-labels", "transfer"] = "probe-labels"
    checkpoint: str = ""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class DistillConfig(ComponentSection):
    """The students, the methods that distil them and their training (``distill``).

    Attributes:
        students: student modalities, each distilled from the teacher.
        methods: registered methods (``xmodal list methods``); ``none`` and ``supervised`` are
            the floor and the upper reference. Each method's options sit under its options key
            (``distill.wcord``, shared by ``wcord-global``/``wcord-local``; ``distill.kd``...),
            and reach its objective as that one object (:meth:`options_for`).
        encoder: the student backbone.
        encoders: per-modality student backbones that replace ``encoder`` for that modality,
            e.g. ``{points: {name: pointnet, pointnet: {width: 2}}}`` (give ``name``: it
            defaults to ``resnet8`` as everywhere). A modality without one whose front end
            cannot feed ``encoder`` (a point cloud into a 2-D CNN) gets its front end's
            ``default_backbone`` (``points``: ``pointnet``) with default options.
        optim: student training.
    """

    components = METHODS
    students: list[str] = field(default_factory=lambda: ["depth", "audio"])
    methods: list[str] = field(default_factory=lambda: ["none", "supervised", "wcord"])
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    by_name: dict[str, Any] = field(default_factory=dict, metadata=COMPONENT_OPTIONS)


@dataclass
class ProbeConfig(ComponentSection):
    """The probes that score each trained encoder (``probe``).

    Attributes:
        probes: registered probes to run (``xmodal list probes``); each probe's options sit
            under its name (``probe.linear``, ``probe.knn``, ``probe.retrieval``,
            ``probe.segmentation``, ``probe.zero_shot``).
    """

    components = PROBES
    probes: list[str] = field(default_factory=lambda: ["linear"])
    by_name: dict[str, Any] = field(default_factory=dict, metadata=COMPONENT_OPTIONS)


@dataclass
class FrontendsConfig(ComponentSection):
    """The options of each modality's front end, under its name (``frontends.depth.max_m``).

    Facts of the data (the audio sample rate) come from the dataset and win.
    """

    components = FRONTENDS
    by_name: dict[str, Any] = field(default_factory=dict, metadata=COMPONENT_OPTIONS)


#: the Python package each tracker needs
TRACKER_PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "aim": "aim",
}


@dataclass
class RuntimeConfig:
    """Where and how the run computes (``runtime``).

    Attributes:
        mixed_precision: Accelerate's ``no``, ``bf16`` or ``fp16``.
        cpu: force CPU even where a GPU exists.
        threads: torch intra-op threads (0 = torch's default).
        checkpoint_every: also save the training state every this many optimiser steps inside
            an epoch (0 = at the end of each epoch only); a killed run resumes from there.
        log_with: experiment trackers, through Accelerate: ``tensorboard``, ``wandb``,
            ``mlflow``, ``aim``; each logs every loss term and the learning rate per step, and
            the probe results at the end (files under ``<run>/logs``).
        dry_run: before any stage, run each selected front end + backbone pair, method and
            probe once on tiny random inputs (:mod:`xmodal.pipelines.dry_run`), so that a
            component that crashes fails in a second with one line, not after preprocessing
            and the teacher; passed checks are remembered in ``<run>/.dry-run.json`` by
            component identity and options. ``false`` skips it.
        channels_last: hold 2-D convolution weights channels-last while training and
            extracting features. Off by default: on CPU it takes about 30% less time per
            ResNet-8 step, but a ResNet-8 depth student's gradients then differ from a float64
            reference about 500 times more than with the default layout
            (``benchmarks/bench_channels_last.py``). On GPUs under mixed precision it is the
            layout tensor cores want. When on, it is part of the keys of what it computes.
    """

    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    cpu: bool = False
    threads: int = 0
    checkpoint_every: int = 0
    log_with: list[Literal["tensorboard", "wandb", "mlflow", "aim"]] = field(default_factory=list)
    dry_run: bool = True
    channels_last: bool = False

    def __post_init__(self) -> None:
        require(self, {"threads": at_least(0), "checkpoint_every": at_least(0)})
        for tracker in self.log_with:
            if importlib.util.find_spec(TRACKER_PACKAGES[tracker]) is None:
                raise ValueError(
                    f"log_with: '{tracker}' needs the package "
                    f"'{TRACKER_PACKAGES[tracker]}': pip install {TRACKER_PACKAGES[tracker]}"
                )


@dataclass
class RunConfig:
    """Every setting of a pipeline run.

    Attributes:
        pipeline: the pipeline this config belongs to.
        seeds: training seeds; results report mean and standard deviation over them.
        plugins: Python modules imported before the config is checked, for components a module
            registers in code (e.g. `FRONTENDS.add("thermal", ThermalFrontend)`) rather than
            through entry points; the folder holding them must be on PYTHONPATH.
    """

    pipeline: str = "scenes"
    seeds: list[int] = field(default_factory=lambda: [0])
    plugins: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    frontends: FrontendsConfig = field(default_factory=FrontendsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")

    @staticmethod
    def before_load(data: dict[str, Any], overrides: list[str]) -> None:
        """Import the modules named in ``plugins`` (the config's, or ``--set plugins=[...]``).

        So that components they register in code are known when the config is checked.
        """
        plugins = data.get("plugins", [])
        for text in overrides:
            keys, value = parse_override(text)
            if keys == ["plugins"]:
                plugins = value
        for i, module in enumerate([plugins] if isinstance(plugins, str) else plugins or []):
            if not isinstance(module, str):
                raise ConfigError(f"plugins[{i}]: expected a module name, got {module!r}")
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(
                    f"plugins[{i}]: cannot import '{module}' ({exc}); put the folder "
                    "holding it on PYTHONPATH, or install its package"
                ) from None

    def fill_defaults(self) -> None:
        """Write the default options of every component the run uses into its section.

        So that a resolved ``config.yaml`` lists all of them (names must have been checked):
        each backbone's defaults join its options (values given stay as given), and a
        modality whose front end swaps the shared backbone for its own default (``points``:
        ``pointnet``) gets that one, filled, under ``distill.encoders`` (the teacher's under
        ``teacher.encoder``). The backbones built are the same, with the same options.
        """
        from xmodal.pipelines.stages.common import encoder_for

        self.data.fill(self.data.name)
        for method in self.distill.methods:
            self.distill.fill(method)
        for probe in self.probe.probes:
            self.probe.fill(probe)
        for modality in (self.teacher.modality, *self.distill.students):
            self.frontends.fill(modality)
        self.teacher.encoder = filled(encoder_for(self.teacher.modality, self.teacher.encoder))
        self.distill.encoder = filled(self.distill.encoder)
        for modality in self.distill.students:
            chosen = encoder_for(modality, self.distill.encoder, self.distill.encoders)
            if modality in self.distill.encoders or chosen.name != self.distill.encoder.name:
                self.distill.encoders[modality] = filled(chosen)


def filled(encoder: EncoderConfig) -> EncoderConfig:
    """A copy of ``encoder`` with its backbone's default options written in (given ones kept)."""
    copy = dataclasses.replace(encoder, by_name=dict(encoder.by_name))
    copy.fill(copy.name)
    return copy
