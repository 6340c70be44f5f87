"""What each component promises beyond xmodal's contract: values, options and invariants."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from xmodal_imu.backbone import ImuCnn
from xmodal_imu.dataset import SyntheticImu, SynthOptions
from xmodal_imu.frontend import GRAVITY, ImuFrontend
from xmodal_imu.method import SimilarityPreserving, SPOptions
from xmodal_imu.probe import CentroidOptions, NearestCentroid


def test_front_end_converts_to_g_and_clips() -> None:
    """Accelerometer values become g, gyroscope values stay rad/s; both are clipped; NaN is 0."""
    x = torch.zeros(1, 6, 3)
    x[0, 0] = torch.tensor([GRAVITY, 100.0, float("nan")])
    x[0, 3] = torch.tensor([0.5, -9.0, 1.0])
    out = ImuFrontend(clip=2.0)(x)
    assert out[0, 0].tolist() == pytest.approx([1.0, 2.0, 0.0])
    assert out[0, 3].tolist() == pytest.approx([0.5, -2.0, 1.0])


@pytest.mark.parametrize("clip", [0.0, -1.0])
def test_front_end_refuses_a_clip_below_zero(clip: float) -> None:
    """The option's check names the field and its rule."""
    with pytest.raises(ValueError, match=r"clip=.* \(must be a finite number > 0\)"):
        ImuFrontend(clip=clip)


def test_backbone_width_sets_its_maps() -> None:
    """``width`` 8: maps of 8 and 16 channels, each stage halving the steps."""
    maps = ImuCnn(6, width=8).forward_features(torch.randn(2, 6, 40))
    assert [list(m.shape) for m in maps] == [[2, 8, 20], [2, 16, 10]]
    with pytest.raises(ValueError, match="width=0"):
        ImuCnn(6, width=0)


def test_sp_loss_is_zero_for_the_same_similarities_and_ignores_scale() -> None:
    """Equal features give 0; scaling one side changes nothing; other features give > 0."""
    g = torch.Generator().manual_seed(0)
    student, other = torch.randn(8, 4, generator=g), torch.randn(8, 5, generator=g)
    sp = SimilarityPreserving(weight=2.0)
    index = torch.arange(8)
    assert float(sp(student, student * 3.0, None, index)["loss"]) == pytest.approx(0.0, abs=1e-6)
    loss = float(sp(student, other, None, index)["loss"])
    assert loss > 0
    half = float(SimilarityPreserving(weight=1.0)(student, other, None, index)["loss"])
    assert loss == pytest.approx(2 * half)
    with pytest.raises(ValueError, match="weight=0"):
        SPOptions(weight=0)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_probe_finds_separated_classes(metric: str) -> None:
    """Well separated clusters: every test sample is classified right."""
    centres = torch.eye(3, 4) * 10
    labels = torch.arange(3).repeat(4)
    split = (centres[labels] + 0.1 * torch.randn(12, 4), labels)
    result = NearestCentroid(CentroidOptions(metric)).evaluate(split, split, split, 3)  # type: ignore[arg-type]  # a Literal from a string
    assert result == {"accuracy": 1.0}


def test_probe_refuses_an_unknown_metric() -> None:
    """``manhattan`` is not one of its metrics."""
    with pytest.raises(ValueError, match="metric='manhattan'"):
        CentroidOptions("manhattan")  # type: ignore[arg-type]  # the wrong value on purpose


def test_dataset_is_the_same_for_a_seed(tmp_path: Path) -> None:
    """Two preparations with one seed give the same splits; another seed other data."""
    source = SyntheticImu()
    first = source.load(source.prepare(SynthOptions(per_class=3, steps=8), tmp_path / "a"))
    again = source.load(source.prepare(SynthOptions(per_class=3, steps=8), tmp_path / "b"))
    other = source.load(source.prepare(SynthOptions(3, 8, seed=1), tmp_path / "c"))
    train = first.splits["train"]
    assert len(train) == 9 and list(train.column("imu").shape) == [9, 6, 8]
    assert torch.equal(train.column("imu"), again.splits["train"].column("imu"))
    assert not torch.equal(train.column("imu"), other.splits["train"].column("imu"))
    assert train.column("label").tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
