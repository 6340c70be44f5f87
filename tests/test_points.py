"""The point-cloud modality: front end, PointNet backbone, scenes points, export, a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import xmodal
from xmodal.cli.data_info import describe
from xmodal.cli.main import main
from xmodal.core.config import load_config
from xmodal.core.errors import ConfigError, XmodalError
from xmodal.data.depth_encodings import Intrinsics, sample_points
from xmodal.data.scenes.points import scene_points
from xmodal.encoders import create_encoder
from xmodal.encoders.base import Encoder
from xmodal.encoders.export import export_encoder
from xmodal.encoders.frontends import PointsFrontend
from xmodal.encoders.pointnet import EdgeConv, knn
from xmodal.evaluation.segmentation_probe import extract_feature_maps
from xmodal.pipelines.config import EncoderConfig, RunConfig
from xmodal.pipelines.name_checks import check_component_names
from xmodal.pipelines.stages.common import encoder_for

NAN = float("nan")


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


def _cloud(b: int = 2, n: int = 40, features: int = 0) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(b, n, 3 + features) + torch.tensor([0.5, -1.0, 3.0] + [0.0] * features)


# ----------------------------------------------------------------------------- front end


def test_frontend_centres_scales_and_is_translation_and_scale_invariant():
    fe = PointsFrontend()
    x = _cloud()
    out = fe(x)
    assert out.shape == (2, 3, 40)
    assert torch.allclose(out.mean(-1), torch.zeros(2, 3), atol=1e-6)  # centred
    assert torch.allclose(out.norm(dim=1).amax(-1), torch.ones(2))  # max radius exactly 1
    moved = x * 2.5 + torch.tensor([10.0, -3.0, 7.0])
    assert torch.allclose(fe(moved), out, atol=1e-5)
    centred = x - x.mean(1, keepdim=True)  # the exact normalisation, by hand
    expected = centred / centred.norm(dim=-1).amax(1)[:, None, None]
    assert torch.allclose(out, expected.transpose(1, 2), atol=1e-6)


def test_frontend_passes_features_through():
    fe = PointsFrontend(features=2)
    x = _cloud(features=2)
    out = fe(x)
    assert fe.out_channels == 5 and out.shape == (2, 5, 40)
    assert torch.equal(out[:, 3:], x[..., 3:].transpose(1, 2))


def test_missing_points_never_give_nan_and_do_not_change_the_embedding():
    torch.manual_seed(0)
    encoder = create_encoder("pointnet", "points", neighbours=0).eval()  # per point: exact
    x = _cloud(1, 30)
    holed = x.clone()
    holed[0, [3, 7, 20], 1] = NAN
    holed[0, 11] = float("inf")
    kept = [i for i in range(30) if i not in (3, 7, 11, 20)]
    out = encoder.frontend(holed)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[..., kept], encoder.frontend(x[:, kept]), atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(encoder(holed), encoder(x[:, kept]), atol=1e-5)
    empty = encoder.frontend(torch.full((1, 5, 3), NAN))
    assert torch.equal(empty, torch.zeros(1, 3, 5))
    single = encoder.frontend(torch.tensor([[[1.0, 2.0, 3.0]]]))  # radius 0: centred, not scaled
    assert torch.equal(single, torch.zeros(1, 3, 1))


@pytest.mark.parametrize("shape", [(2, 10), (2, 10, 4), (2, 0, 3), (10, 3, 2, 1)])
def test_frontend_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"points input must be \[B, N, 3\]"):
        PointsFrontend()(torch.zeros(shape))
    with pytest.raises(ValueError, match="features >= 0"):
        PointsFrontend(features=-1)


# ----------------------------------------------------------------------------- backbone


def test_pointnet_shapes_options_and_dense_features():
    encoder = create_encoder("pointnet", "points")
    x = _cloud(3, 50)
    maps = encoder.forward_features(x)
    assert encoder.stage_channels == [64, 128, 256] and encoder.embed_dim == 256
    assert [m.shape for m in maps] == [(3, c, 50) for c in (64, 128, 256)]
    out = encoder(x)
    assert out.shape == (3, 256) and torch.allclose(
        out, encoder.backbone.embed_norm(maps[-1].amax(-1))
    )
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())
    narrow = create_encoder(
        "pointnet", "points", {"features": 1}, width=0.5, layers=2, norm="group", neighbours=8
    )
    assert narrow.stage_channels == [32, 64, 128]
    assert narrow(_cloud(2, 20, features=1)).shape == (2, 128)
    with pytest.raises(ValueError, match="per-pixel probes need image maps"):
        extract_feature_maps(encoder, x, stages=[-1])


def test_knn_matches_brute_force_and_edge_layer_sees_neighbours():
    x = _cloud(2, 25).transpose(1, 2)
    idx = knn(x, 4)
    dist = torch.cdist(x.transpose(1, 2), x.transpose(1, 2))
    assert torch.equal(idx.sort(-1).values, dist.topk(4, largest=False).indices.sort(-1).values)
    plain = create_encoder("pointnet", "points", neighbours=0)
    local = create_encoder("pointnet", "points", neighbours=4)
    assert isinstance(local.backbone.stages[0][0], EdgeConv)
    assert not any(isinstance(m, EdgeConv) for m in plain.modules())
    assert local(_cloud(2, 25)).shape == (2, 256)


def test_encoder_pools_with_the_backbone_or_averages():
    class Flat(torch.nn.Module):  # a point backbone without its own pooling
        out_dim, stage_channels, layout = 3, [3], "points"

        def forward_features(self, x):
            return [x]

    x = _cloud(2, 10)
    encoder = Encoder("points", PointsFrontend(), Flat())
    assert torch.allclose(encoder(x), encoder.frontend(x).mean(-1))
    torch.manual_seed(0)
    pointnet = create_encoder("pointnet", "points").eval()
    with torch.no_grad():
        last = pointnet.forward_features(x)[-1]
        assert torch.equal(pointnet(x), pointnet.backbone.pool(last))


def test_a_backbone_pool_that_is_not_a_method_breaks_the_contract():
    from xmodal.encoders.base import backbone_contract

    class Odd(torch.nn.Module):
        out_dim, stage_channels, pool = 4, [4], "max"

        def forward_features(self, x):
            return [x]

    with pytest.raises(ValueError, match=r"backbone 'odd'.pool must be a method"):
        backbone_contract("odd", lambda in_channels: Odd())


def test_pooled_embedding_is_permutation_invariant():
    torch.manual_seed(0)
    encoder = create_encoder("pointnet", "points", width=0.25)
    encoder.train()
    for _ in range(2):  # move BatchNorm's running statistics off their initial values
        encoder(_cloud(4, 64))
    encoder.eval()
    x = _cloud(4, 64)
    perm = torch.randperm(64)
    with torch.no_grad():
        assert torch.allclose(encoder(x[:, perm]), encoder(x), atol=1e-6)


def test_layouts_must_match():
    with pytest.raises(
        XmodalError, match="backbone 'resnet8' takes image input.*use e.g. 'pointnet'"
    ):
        create_encoder("resnet8", "points")
    with pytest.raises(XmodalError, match="backbone 'pointnet' takes points input"):
        create_encoder("pointnet", "depth")


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = create_encoder("pointnet", "points", {"features": 1}, width=0.25).eval()
    export_encoder(encoder, tmp_path, "pointnet", {"width": 0.25}, {"features": 1})
    loaded = xmodal.load_encoder(tmp_path)
    x = _cloud(2, 16, features=1)
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))


# ----------------------------------------------------------------------------- depth -> points


def test_sample_points_matches_a_hand_backprojection():
    depth = np.array([[2.0, 0.0, 4.0], [1.0, NAN, 3.0]], np.float32)
    K = Intrinsics(fx=2.0, fy=4.0, cx=1.0, cy=0.5)
    # x = (u - cx) z / fx, y = (v - cy) z / fy, z; (u, v) = (column, row); holes left out
    by_hand = {(-1.0, -0.25, 2.0), (2.0, -0.5, 4.0), (-0.5, 0.125, 1.0), (1.5, 0.375, 3.0)}
    rng = np.random.default_rng(0)
    every = sample_points(depth, K, 4, rng)
    assert every.dtype == np.float32 and every.shape == (4, 3)
    assert {tuple(map(float, p)) for p in every} == by_hand
    padded = sample_points(depth, K, 10, rng)  # 4 valid: each repeated 2 or 3 times, in turn
    counts = {p: sum(tuple(map(float, q)) == p for q in padded) for p in by_hand}
    assert sorted(counts.values()) == [2, 2, 3, 3]
    few = sample_points(depth, K, 3, rng)
    assert (
        len({tuple(p) for p in few.tolist()}) == 3
        and {tuple(map(float, p)) for p in few} <= by_hand
    )
    assert np.isnan(sample_points(np.zeros((2, 2), np.float32), K, 3, rng)).all()
    with pytest.raises(ValueError, match="num_points must be a positive integer"):
        sample_points(depth, K, 0, rng)


def test_scene_points_are_seeded_per_sample():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 4, (5, 6, 6)).astype(np.float32)
    K = Intrinsics(5.0, 5.0, 2.5, 2.5)
    first = scene_points(depth, K, 16, seed=0, split="train")
    assert first.shape == (5, 16, 3)
    assert np.array_equal(first, scene_points(depth, K, 16, seed=0, split="train"))
    assert np.array_equal(first[:3], scene_points(depth[:3], K, 16, seed=0, split="train"))
    assert not np.array_equal(first, scene_points(depth, K, 16, seed=1, split="train"))
    assert not np.array_equal(first, scene_points(depth, K, 16, seed=0, split="val"))


# ----------------------------------------------------------------------------- pipeline


def test_student_backbone_per_modality():
    resnet = EncoderConfig(name="resnet8")
    assert encoder_for("depth", resnet) is resnet
    assert encoder_for("points", resnet) == EncoderConfig(name="pointnet")
    wide = EncoderConfig.of("pointnet", width=2.0)
    assert encoder_for("points", resnet, {"points": wide}) is wide
    config = load_config(
        RunConfig,
        overrides=["distill.students=[depth,points]", "distill.encoders.points.name=resnet8"],
    )
    with pytest.raises(
        ConfigError, match="distill.encoders.points: backbone 'resnet8' takes image"
    ):
        check_component_names(config)
    config = load_config(
        RunConfig, overrides=["distill.students=[points]", "distill.encoder.name=pointnet"]
    )
    check_component_names(config)  # pointnet for points needs no override


TINY = [
    "data.scenes.image_size=16",
    "data.scenes.num_train=32",
    "data.scenes.num_val=16",
    "data.scenes.num_test=16",
    "data.scenes.num_points=48",
    "teacher.optim.epochs=1",
    "distill.optim.epochs=1",
    "teacher.optim.batch_size=16",
    "distill.optim.batch_size=16",
    "distill.wcord.num_negatives=16",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
    "probe.probes=[linear]",
    "distill.students=[depth,points]",
    "distill.methods=[none,wcord]",
]


def test_tiny_scenes_run_with_a_points_student(tmp_path):
    argv = ["run", "scenes", "--out", str(tmp_path)]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {(r["modality"], r["method"], r["encoder"]) for r in rows if r["role"] == "student"} == {
        (m, k, e)
        for m, e in (("depth", "resnet8"), ("points", "pointnet"))
        for k in ("none", "wcord")
    }
    assert "points / `pointnet`" in (tmp_path / "report.md").read_text()
    unit = tmp_path / "distill" / "seed0" / "points" / "wcord"
    encoder = xmodal.load_encoder(unit)
    assert json.loads((unit / "encoder.json").read_text())["backbone"] == "pointnet"
    from xmodal.data.scenes_source import ScenesSource

    data = ScenesSource().load(tmp_path / "data" / "scenes" / "data.h5")
    points = data.splits["test"].column("points")
    assert points.shape == (16, 48, 3) and torch.isfinite(points).all()
    assert encoder(points[:4]).shape == (4, 256)
    overview = dict(describe(tmp_path / "data" / "scenes" / "data.h5")[0][2])
    assert "points (48 x 3 float32, from depth at load)" in overview["modalities"]
