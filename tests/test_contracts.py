"""One contract per kind, run over every registered entry.

The entries are the built-ins and any plugin installed in the test environment: the loops read
the registries, not hand-written lists.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import xmodal
from xmodal.core.registry import BACKBONES, FRONTENDS, METHODS, PROBES
from xmodal.encoders.base import (
    Backbone,
    Frontend,
    backbone_for,
    create_encoder,
    example_options,
    layout_of,
)
from xmodal.encoders.export import export_encoder, load_encoder
from xmodal.objectives.objective import NEEDS, Objective, ObjectiveContext

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL_BACKBONE = "resnet8"  # front ends are checked behind it (or their default backbone)


def _encoder(backbone: str, modality: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_encoder(backbone, modality, **example_options(BACKBONES.get(backbone)))


def _check_encoder(backbone: str, modality: str, tmp_path) -> None:
    encoder = _encoder(backbone, modality).train()
    example = FRONTENDS.get(modality)().example_input(2)
    embedding = encoder(example)
    assert embedding.shape == (2, encoder.embed_dim) and embedding.dtype == torch.float32
    maps = encoder.forward_features(example)
    assert [m.shape[1] for m in maps] == encoder.stage_channels and all(
        m.shape[0] == 2 for m in maps
    )
    embedding.square().sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    # a seed fixes the initial weights
    again = _encoder(backbone, modality)
    for (name, a), b in zip(encoder.state_dict().items(), again.state_dict().values(), strict=True):
        if a.dtype.is_floating_point and "running" not in name:
            assert torch.equal(a, b), name
    # the export loads back to the same embeddings
    encoder.eval()
    export_encoder(encoder, tmp_path, backbone, example_options(BACKBONES.get(backbone)), {})
    loaded = load_encoder(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(example), encoder(example), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modality", FRONTENDS.names())
def test_every_front_end_keeps_its_contract(modality, tmp_path):
    frontend = FRONTENDS.get(modality)()
    assert isinstance(frontend, Frontend)
    out = frontend(frontend.example_input(3))
    assert out.shape[:2] == (3, frontend.out_channels) and torch.isfinite(out).all()
    assert out.dtype == torch.float32
    _check_encoder(backbone_for(modality, SMALL_BACKBONE), modality, tmp_path)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_keeps_its_contract(backbone, tmp_path):
    factory = BACKBONES.get(backbone)
    assert isinstance(factory(in_channels=3, **example_options(factory)), Backbone)
    # behind the first front end whose layout it takes (rgb for image backbones)
    modality = next(
        m
        for m in ("rgb", *FRONTENDS.names())
        if layout_of(FRONTENDS.get(m)) == layout_of(BACKBONES.get(backbone))
    )
    _check_encoder(backbone, modality, tmp_path)


def _context(seed: int = 0) -> ObjectiveContext:
    g = torch.Generator().manual_seed(99)
    return ObjectiveContext(
        student_dim=6,
        teacher_dim=5,
        num_samples=40,
        num_classes=3,
        seed=seed,
        teacher_logits=torch.randn(40, 3, generator=g),
        train_labels=torch.arange(40) % 3,
        batch_size=8,
    )


def _batch() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(7)
    return (
        torch.randn(8, 6, generator=g),
        torch.randn(8, 5, generator=g),
        torch.arange(8) % 3,
        torch.arange(8),
    )


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_keeps_its_contract(name):
    method = METHODS.get(name)
    assert isinstance(method, type) and issubclass(method, Objective)
    options = method.options() if method.options is not None else None
    assert set(method.needs_for(options)) <= set(NEEDS)
    if options is not None:
        assert set(method.hparams_of(options)) >= {f.name for f in dataclasses.fields(options)}
    if not method.trains:
        return
    student, teacher, labels, indices = _batch()
    student.requires_grad_(True)
    objective = method.build(_context(), options)
    out = objective(student, teacher, labels, indices)
    assert out["loss"].shape == () and out["loss"].dtype == torch.float32
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    # a seed fixes the objective; its state_dict carries all of it
    first = method.build(_context(seed=3), options)
    second = method.build(_context(seed=3), options)
    second.load_state_dict(first.state_dict())
    a = first(*_batch())["loss"]
    b = second(*_batch())["loss"]
    torch.testing.assert_close(a, b)


def _pooled_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    return torch.randn(n, 4, generator=g) + labels.unsqueeze(1).float(), labels


@pytest.mark.parametrize("name", PROBES.names())
def test_every_probe_keeps_its_contract(name):
    probe_cls = PROBES.get(name)
    options = PROBES.options_type(name)
    probe = probe_cls(options() if options else None)
    if getattr(probe_cls, "consumes_maps", False):
        g = torch.Generator().manual_seed(0)
        split = (torch.randn(6, 4, 4, 4, generator=g), torch.randint(0, 4, (6, 8, 8), generator=g))
        runs = [probe.evaluate_maps(split, split, split, num_classes=3) for _ in range(2)]
    elif getattr(probe_cls, "consumes_text", False):  # class text vectors, no heads: own space
        feats, labels = _pooled_split(30, 0)
        classes = torch.nn.functional.normalize(torch.eye(3, 4) + 0.1, dim=1)
        runs = [
            probe.evaluate_zero_shot(feats, labels, classes, None, ["a", "b", "c"])
            for _ in range(2)
        ]
    elif getattr(probe_cls, "consumes_pairs", False):
        feats = {s: _pooled_split(30, i)[0] for i, s in enumerate(("train", "val", "test"))}
        runs = [
            probe.evaluate_pairs(feats, {k: v * 2 + 1 for k, v in feats.items()}) for _ in range(2)
        ]
    else:
        splits = [_pooled_split(30, i) for i in range(3)]
        runs = [probe.evaluate(*splits, num_classes=3) for _ in range(2)]
    results = [r if isinstance(r, dict) else dataclasses.asdict(r) for r in runs]
    for metric in getattr(probe_cls, "metrics", ()):
        assert isinstance(results[0][metric], float) and results[0][metric] == results[1][metric]


def test_import_xmodal_is_enough_for_every_registry_and_helper():
    assert set(xmodal.list_components("backbones")) == set(BACKBONES.names())
    encoder = xmodal.create_encoder("resnet8", "depth")
    assert encoder(FRONTENDS.get("depth")().example_input(2)).shape == (2, encoder.embed_dim)
