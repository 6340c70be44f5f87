"""Dense linear probe: per-pixel semantic segmentation from frozen feature maps.

A 1x1 convolution on the encoder's stage maps (a linear classifier per pixel) measures where
the features keep their information. Maps are extracted once and stored in float16; features
are standardised with training statistics, weight decay is chosen by validation mIoU, and the
probe is refit on train + val and scored once on test. Labels follow NYUv2 (``0`` ignored).

Details: docs/probes.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

from xmodal.core.checks import at_least, each, non_negative, positive, require
from xmodal.core.deprecation import former_names
from xmodal.core.heap import release_free_heap
from xmodal.core.registry import PROBES
from xmodal.data.arrays import Rows
from xmodal.encoders.base import Encoder
from xmodal.evaluation.segmentation_metrics import ConfusionMatrix

Split = tuple[Tensor, Tensor]  # (maps [N, C, h, w], labels [N, H, W])


def _resolve_stages(stages: list[int], num_stages: int) -> list[int]:
    """Stage indices (negative allowed) -> non-negative indices; raises on bad ones."""
    if not stages:
        raise ValueError("stages must name at least one stage index")
    resolved = []
    for s in stages:
        if isinstance(s, bool) or not isinstance(s, int) or not -num_stages <= s < num_stages:
            raise ValueError(
                f"stage index {s!r} is out of range for an encoder with {num_stages} "
                f"stages (valid: {-num_stages}..{num_stages - 1})"
            )
        resolved.append(s % num_stages)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"stages {stages} name the same stage twice")
    return resolved


def extract_feature_maps(
    encoder: Encoder,
    inputs: Tensor | Rows,
    stages: list[int],
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Concatenated stage maps ``[N, C_sum, h, w]`` (float16, on CPU) of raw ``inputs [N, ...]``.

    ``stages`` index ``encoder.forward_features``'s list (coarsest last; ``-1`` is the last
    stage). Each selected map is bilinearly resized to the resolution ``(h, w)`` of the finest
    selected stage, and they are concatenated on channels in the order of ``stages``, so
    ``C_sum = sum(encoder.stage_channels[s] for s in stages)``.

    The encoder runs in eval mode (BatchNorm uses running statistics) under
    ``inference_mode``; its training flag is restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(inputs) == 0:
        raise ValueError("extract_feature_maps: inputs are empty")
    chosen = _resolve_stages(list(stages), len(encoder.stage_channels))
    was_training = encoder.training
    encoder.eval().to(device)
    out: Tensor | None = None
    try:
        for start in range(0, len(inputs), batch_size):
            with torch.inference_mode():
                maps = encoder.forward_features(inputs[start : start + batch_size].to(device))
                maps = [maps[i] for i in chosen]
                if maps[0].ndim != 4:  # e.g. points: [B, C, N], one column per point, no pixels
                    raise ValueError(
                        f"extract_feature_maps: modality '{encoder.modality}' gives "
                        f"maps of shape {list(maps[0].shape)}; per-pixel probes need "
                        "image maps [B, C, h, w]"
                    )
                size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
                maps = [
                    m
                    if m.shape[-2:] == size
                    else F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False)
                    for m in maps
                ]
                batch = torch.cat(maps, 1).to(torch.float16).cpu()
            if not torch.isfinite(batch).all():
                raise ValueError(
                    f"extract_feature_maps: samples {start}..{start + len(batch) - 1} "
                    "give NaN/inf maps (NaN in the encoder, or values beyond float16)"
                )
            if out is None:  # allocated outside inference_mode: a normal tensor for the caller
                out = torch.empty((len(inputs), *batch.shape[1:]), dtype=torch.float16)
            out[start : start + len(batch)] = batch
            release_free_heap()  # else resident memory grows with the rows read (see core.heap)
    finally:
        encoder.train(was_training)
    assert out is not None
    return out


@dataclass
class SegmentationProbeOptions:
    """Options of the segmentation probe.

    Attributes:
        stages: stage indices whose maps the caller extracts (see
            :func:`extract_feature_maps`); the probe itself takes whatever maps it is given.
        epochs: passes over the training images per fit.
        batch_size: images per AdamW step.
        lr: peak AdamW learning rate (cosine-annealed to 0 over the fit).
        weight_decay_grid: candidate AdamW weight decays, chosen by validation mIoU.
        seed: seeds the head's initialisation and the batch order of every fit.
    """

    stages: list[int] = field(default_factory=lambda: [-2, -1])
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-2
    weight_decay_grid: list[float] = field(default_factory=lambda: [0.0, 1e-4, 1e-3])
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self,
            {
                "stages": (
                    (
                        lambda v: (
                            bool(v)
                            and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
                            and len(set(v)) == len(v)
                        )
                    ),
                    "a non-empty list of distinct stage indices",
                ),
                "epochs": at_least(1),
                "batch_size": at_least(1),
                "lr": positive(),
                "weight_decay_grid": each(non_negative()),
                "seed": at_least(0),
            },
        )


@dataclass
class SegmentationResult:
    """Test metrics (fractions in [0, 1]), the chosen weight decay and its validation mIoU."""

    pixel_accuracy: float
    mean_iou: float
    mean_class_accuracy: float
    val_mean_iou: float
    weight_decay: float


class _Standardiser:
    """Per-channel mean/std over all pixels of some maps, computed in float64 batch by batch."""

    def __init__(self, maps: list[Tensor], chunk: int) -> None:
        channels = maps[0].shape[1]
        total, sq, count = (
            torch.zeros(channels, dtype=torch.float64),
            torch.zeros(channels, dtype=torch.float64),
            0,
        )
        for m in maps:
            for i in range(0, len(m), chunk):
                x = m[i : i + chunk].double()
                total += x.sum((0, 2, 3))
                sq += x.pow(2).sum((0, 2, 3))
                count += x.numel() // channels
        mean = total / count
        std = (sq / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
        self.mean = mean.float().view(1, -1, 1, 1)
        self.std = std.float().view(1, -1, 1, 1)

    def __call__(self, maps: Tensor) -> Tensor:
        return (maps.float() - self.mean) / self.std


def _batches(
    splits: list[Split], batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches within each split (sizes may differ between splits).

    Shuffled when a generator is given, in order otherwise.
    """
    plan = []
    for k, (maps, _) in enumerate(splits):
        order = (
            torch.randperm(len(maps), generator=generator)
            if generator is not None
            else torch.arange(len(maps))
        )
        plan += [(k, order[i : i + batch_size]) for i in range(0, len(maps), batch_size)]
    if generator is not None:
        plan = [plan[i] for i in torch.randperm(len(plan), generator=generator).tolist()]
    for k, idx in plan:
        yield splits[k][0][idx], splits[k][1][idx]


def _logits(maps: Tensor, weight: Tensor, bias: Tensor, size: torch.Size) -> Tensor:
    """1x1 convolution, then bilinear upsampling to the label resolution ``size``."""
    logits = F.conv2d(maps, weight, bias)
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits


@PROBES.register("segmentation")
class SegmentationProbe:
    """Per-pixel semantic segmentation from dense feature maps (a 1x1 convolution).

    Consumes dense maps ``[N, C, h, w]`` through :meth:`evaluate_maps`, not pooled features;
    the pipeline's probe stage recognises it by that method.
    """

    options = SegmentationProbeOptions

    consumes_maps = True

    def __init__(self, config: SegmentationProbeOptions | None = None) -> None:
        self.config = config or SegmentationProbeOptions()

    def evaluate_maps(
        self, train: Split, val: Split, test: Split, num_classes: int
    ) -> SegmentationResult:
        """Fit a head per weight decay on train, choose on val, score on test.

        Each split is ``(maps [N, C, h, w] float, labels [N, H, W] int in 0..num_classes)``,
        0 = unlabeled. Logits are upsampled bilinearly from ``(h, w)`` to ``(H, W)``.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        named = {"train": train, "val": val, "test": test}
        for name, split in named.items():
            self._check(name, split, num_classes)
        channels = {n: s[0].shape[1] for n, s in named.items()}
        if len(set(channels.values())) != 1:
            raise ValueError(f"segmentation probe: splits have different channel counts {channels}")

        cfg = self.config
        norm = _Standardiser([train[0]], cfg.batch_size)
        best_miou, best_wd = -1.0, cfg.weight_decay_grid[0]
        for wd in cfg.weight_decay_grid:
            head = self._fit([train], norm, num_classes, wd)
            miou = self._score(head, val, norm, num_classes).mean_iou
            if miou > best_miou:
                best_miou, best_wd = miou, wd
        norm = _Standardiser([train[0], val[0]], cfg.batch_size)
        head = self._fit([train, val], norm, num_classes, best_wd)
        cm = self._score(head, test, norm, num_classes)
        return SegmentationResult(
            pixel_accuracy=cm.pixel_accuracy,
            mean_iou=cm.mean_iou,
            mean_class_accuracy=cm.mean_class_accuracy,
            val_mean_iou=best_miou,
            weight_decay=best_wd,
        )

    @staticmethod
    def _check(name: str, split: Split, num_classes: int) -> None:
        maps, labels = split
        if maps.ndim != 4 or not maps.is_floating_point():
            raise ValueError(
                f"segmentation probe: {name} maps must be float [N, C, h, w], got "
                f"{maps.dtype} {list(maps.shape)}"
            )
        if labels.ndim != 3 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(
                f"segmentation probe: {name} labels must be integer [N, H, W], got "
                f"{labels.dtype} {list(labels.shape)}"
            )
        if len(maps) != len(labels) or len(maps) == 0:
            raise ValueError(
                f"segmentation probe: {name} has {len(maps)} maps but {len(labels)} "
                "label maps (need the same non-zero number)"
            )
        for i in range(0, len(maps), 64):  # chunked: no full-size temporary
            if not torch.isfinite(maps[i : i + 64]).all():
                raise ValueError(f"segmentation probe: {name} maps contain NaN or inf")
        if labels.min() < 0 or labels.max() > num_classes:
            raise ValueError(
                f"segmentation probe: {name} labels must be in 0..{num_classes} "
                f"(0 = unlabeled), got {int(labels.min())}..{int(labels.max())}"
            )
        if not (labels > 0).any():
            raise ValueError(f"segmentation probe: {name} has no labeled pixel (all labels are 0)")

    def _fit(
        self, splits: list[Split], norm: _Standardiser, num_classes: int, weight_decay: float
    ) -> tuple[Tensor, Tensor]:
        """Head ``(weight [K, C, 1, 1], bias [K])`` minimising per-pixel cross-entropy."""
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        channels = splits[0][0].shape[1]
        weight = (
            0.01 * torch.randn(num_classes, channels, 1, 1, generator=generator)
        ).requires_grad_()
        bias = torch.zeros(num_classes, requires_grad=True)
        opt = torch.optim.AdamW(
            [
                {"params": [weight], "weight_decay": weight_decay},
                {"params": [bias], "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )
        steps = cfg.epochs * sum(math.ceil(len(m) / cfg.batch_size) for m, _ in splits)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        with torch.set_grad_enabled(True):  # enable_grad, typed
            for _ in range(cfg.epochs):
                for maps, labels in _batches(splits, cfg.batch_size, generator):
                    target = labels.long() - 1  # unlabeled -> -1, ignored
                    if (target >= 0).any():  # a batch of only unlabeled pixels has no loss
                        logits = _logits(norm(maps), weight, bias, target.shape[-2:])
                        loss = F.cross_entropy(logits, target, ignore_index=-1)
                        opt.zero_grad()
                        torch.autograd.backward(loss)  # loss.backward(), typed
                        opt.step()
                        sched.step()
        return weight.detach(), bias.detach()

    def _score(
        self, head: tuple[Tensor, Tensor], split: Split, norm: _Standardiser, num_classes: int
    ) -> ConfusionMatrix:
        cm = ConfusionMatrix(num_classes)
        with torch.no_grad():
            for maps, labels in _batches([split], self.config.batch_size, None):
                logits = _logits(norm(maps), *head, labels.shape[-2:])
                cm.update(logits.argmax(1) + 1, labels)
        return cm


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(
    __name__, {"SegmentationProbeConfig": "SegmentationProbeOptions"}, globals()
)
