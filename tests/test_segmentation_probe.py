"""Segmentation probe: linearly decodable maps are segmented, random ones are not.

Fits are deterministic; weight decay is chosen on validation; feature maps are extracted as
documented.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from xmodal.core.registry import PROBES
from xmodal.encoders.base import create_encoder
from xmodal.evaluation.segmentation_probe import (
    SegmentationProbe,
    SegmentationProbeOptions,
    extract_feature_maps,
)

K, D = 4, 8
# orthonormal class directions: the label is the argmax of this fixed projection
PROJ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(123)))[0][:K]


def _linear_split(n, seed, noise=0.3):
    """Maps ``[n, D, 8, 8]`` (float16) and labels ``[n, 16, 16]`` in 0..K, ~10% unlabeled.

    Classes are drawn on a 4x4 grid and upsampled, so that bilinear upsampling of the logits
    from 8x8 to 16x16 only mixes neighbours near block edges.
    """
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, K, (n, 4, 4), generator=g)
    base = 3.0 * PROJ[cls].permute(0, 3, 1, 2) + noise * torch.randn(n, D, 4, 4, generator=g)
    maps = F.interpolate(base, scale_factor=2, mode="nearest")
    labels = torch.einsum("kd,ndhw->nkhw", PROJ, base).argmax(1) + 1
    labels = labels.repeat_interleave(4, 1).repeat_interleave(4, 2)
    labels[torch.rand(labels.shape, generator=g) < 0.1] = 0
    return maps.half(), labels


def _random_split(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, D, 8, 8, generator=g).half(),
        torch.randint(0, K + 1, (n, 16, 16), generator=g),
    )


def test_linearly_decodable_maps_are_segmented(single_thread):
    result = SegmentationProbe().evaluate_maps(
        _linear_split(48, 0), _linear_split(16, 1), _linear_split(32, 2), num_classes=K
    )
    assert result.mean_iou > 0.9 and result.pixel_accuracy > 0.95
    assert result.mean_class_accuracy > 0.95 and result.val_mean_iou > 0.9


def test_random_maps_stay_near_chance(single_thread):
    result = SegmentationProbe().evaluate_maps(
        _random_split(48, 0), _random_split(16, 1), _random_split(32, 2), num_classes=K
    )
    # chance: pixel accuracy 1/4, IoU of independent uniform labels 1/7
    assert result.pixel_accuracy < 0.32 and result.mean_iou < 0.22


def test_fits_are_deterministic(single_thread):
    cfg = SegmentationProbeOptions(epochs=5, seed=3)
    splits = tuple(_linear_split(n, seed, noise=0.8) for n, seed in ((16, 0), (8, 1), (8, 2)))
    first = SegmentationProbe(cfg).evaluate_maps(*splits, num_classes=K)
    second = SegmentationProbe(cfg).evaluate_maps(*splits, num_classes=K)
    assert first == second


def test_weight_decay_is_chosen_by_validation_miou(single_thread):
    grid = [50.0, 0.0, 5.0]
    splits = tuple(_linear_split(n, seed, noise=0.8) for n, seed in ((16, 0), (8, 1), (8, 2)))

    def run(wds):
        return SegmentationProbe(
            SegmentationProbeOptions(epochs=5, weight_decay_grid=wds)
        ).evaluate_maps(*splits, num_classes=K)

    # a one-value grid reports that value's validation mIoU; fits share seed, init and order
    val = [run([wd]).val_mean_iou for wd in grid]
    assert len(set(val)) > 1, "the grid should give different validation mIoUs"
    result = run(grid)
    assert result.weight_decay == grid[val.index(max(val))]
    assert result.val_mean_iou == max(val)
    assert 0.0 <= result.val_mean_iou <= 1.0


def test_extract_feature_maps_matches_manual_forward():
    torch.manual_seed(0)
    encoder = create_encoder("resnet8", "depth")
    encoder.train()
    depth = torch.rand(5, 16, 16) * 5 + 0.5  # metres
    maps = extract_feature_maps(encoder, depth, stages=[-2, -1], batch_size=3)
    assert encoder.training  # training flag restored
    assert maps.dtype == torch.float16 and maps.device.type == "cpu"
    assert maps.shape == (5, 32 + 64, 8, 8)  # resnet8 stages: 16@16x16, 32@8x8, 64@4x4

    encoder.eval()
    with torch.no_grad():
        stage = encoder.forward_features(depth)
    expected = torch.cat(
        [stage[1], F.interpolate(stage[2], size=(8, 8), mode="bilinear", align_corners=False)], 1
    )
    torch.testing.assert_close(maps.float(), expected, atol=2e-3, rtol=2e-3)

    finest = extract_feature_maps(encoder, depth, stages=[2, 0])  # order kept, finest = stage 0
    assert finest.shape == (5, 64 + 16, 16, 16)
    torch.testing.assert_close(finest[:, 64:].float(), stage[0], atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("stages", [[3], [-4], [], [1, -2]])
def test_extract_feature_maps_rejects_bad_stages(stages):
    encoder = create_encoder("resnet8", "depth")
    with pytest.raises(ValueError, match="stage"):
        extract_feature_maps(encoder, torch.rand(2, 8, 8) + 1, stages=stages)


def test_bad_splits_raise():
    train, val, test = _linear_split(4, 0), _linear_split(4, 1), _linear_split(4, 2)
    probe = SegmentationProbe(SegmentationProbeOptions(epochs=1))
    bad = val[0].clone()
    bad[1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="val maps contain NaN or inf"):
        probe.evaluate_maps(train, (bad, val[1]), test, num_classes=K)
    bad = test[0].clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="test maps contain NaN or inf"):
        probe.evaluate_maps(train, val, (bad, test[1]), num_classes=K)
    with pytest.raises(ValueError, match="train has 4 maps but 3 label maps"):
        probe.evaluate_maps((train[0], train[1][:3]), val, test, num_classes=K)
    with pytest.raises(ValueError, match="val has no labeled pixel"):
        probe.evaluate_maps(train, (val[0], torch.zeros_like(val[1])), test, num_classes=K)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.3"):
        probe.evaluate_maps(train, val, test, num_classes=3)
    with pytest.raises(ValueError, match="channel counts"):
        probe.evaluate_maps(train, val, (test[0][:, :4], test[1]), num_classes=K)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stages=[]),
        dict(stages=[-1, -1]),
        dict(epochs=0),
        dict(batch_size=0),
        dict(lr=0.0),
        dict(weight_decay_grid=[]),
        dict(weight_decay_grid=[-1e-3]),
    ],
)
def test_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        SegmentationProbeOptions(**kwargs)


def test_registered_as_dense_probe():
    probe_cls = PROBES.get("segmentation")
    assert probe_cls is SegmentationProbe and hasattr(probe_cls, "evaluate_maps")
