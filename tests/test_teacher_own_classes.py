"""A teacher with classes of its own keeps its classifier.

Such a teacher is a transfer teacher (6 object categories against the 8 scene classes) or a
checkpoint trained on another label space. Its logits are ``[N, Ct]`` and the student reads
them through a KD head of ``Ct``, apart from the classifier over the dataset's ``C``. End to
end: tests/test_pipeline_scenes.py (every method from the transfer teacher; that teacher as a
checkpoint under probe-labels).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal.core.errors import DataError
from xmodal.core.registry import METHODS
from xmodal.objectives.baselines.kd import KDOptions
from xmodal.objectives.objective import ObjectiveContext, teacher_has_own_classes
from xmodal.objectives.task_terms import LabelTerms, kd_loss
from xmodal.objectives.wcord import WCoRDOptions
from xmodal.pipelines.stages.teacher import _teacher_logits

N, DS, DT, C, CT = 40, 6, 5, 8, 6


def _context(teacher_classes: int = CT, own: bool = False) -> ObjectiveContext:
    g = torch.Generator().manual_seed(0)
    return ObjectiveContext(
        student_dim=DS,
        teacher_dim=DT,
        num_samples=N,
        num_classes=C,
        seed=1,
        teacher_logits=torch.randn(N, teacher_classes, generator=g) * 3,
        train_labels=torch.arange(N) % C,
        teacher_own_classes=own,
    )


def test_own_classes_follow_the_count_or_the_declaration() -> None:
    assert teacher_has_own_classes(_context(CT))
    assert not teacher_has_own_classes(_context(C))
    assert teacher_has_own_classes(_context(C, own=True))  # a transfer teacher with C classes
    assert not teacher_has_own_classes(ObjectiveContext(DS, DT, N, C))  # no logits


@pytest.mark.parametrize(
    "alpha, teacher_classes, own, heads",
    [
        (0.0, CT, False, (None, CT)),  # KD alone: a head of the teacher's size, no classifier
        (0.5, CT, False, (C, CT)),  # CE over the dataset's 8, KD over the teacher's 6
        (0.5, C, True, (C, C)),  # same count, another label space: still two heads
        (0.5, C, False, (C, None)),  # the teacher's classes are the dataset's: one shared head
    ],
)
def test_kd_head_size(alpha, teacher_classes, own, heads) -> None:
    ctx = _context(teacher_classes, own)
    kd = METHODS.get("kd").build(ctx, KDOptions(alpha=alpha))
    terms = (
        METHODS.get("wcord")
        .build(ctx, WCoRDOptions(embed_dim=4, alpha=alpha, beta=1.0))
        .label_terms
    )
    for objective in (kd, terms):
        got = tuple(
            None if m is None else m.out_features for m in (objective.classifier, objective.kd_head)
        )
        assert got == heads
        assert all(
            m is None or m.in_features == DS for m in (objective.classifier, objective.kd_head)
        )


def test_two_heads_give_ce_over_the_dataset_and_kd_over_the_teacher() -> None:
    ctx = _context(CT)
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(8, DS, generator=g), torch.randn(8, DT, generator=g)
    labels, idx = torch.tensor([0, 7, 3, 5, 1, 6, 2, 4]), torch.arange(3, 11)
    terms = LabelTerms(DS, C, 0.3, 2.0, 4.0, teacher_logits=ctx.teacher_logits, seed=1)
    out = terms(student, labels, idx)
    ce = F.cross_entropy(terms.classifier(student), labels)
    kd = kd_loss(terms.kd_head(student), ctx.teacher_logits[idx], 4.0)
    assert torch.allclose(out["ce"], ce) and torch.allclose(out["kd"], kd)
    assert torch.allclose(out["loss"], 0.3 * ce + 2.0 * kd)
    for name, options in (
        ("kd", KDOptions(alpha=0.3)),
        ("wcord", WCoRDOptions(embed_dim=4, num_negatives=8, alpha=0.3, beta=2.0)),
    ):
        objective = METHODS.get(name).build(ctx, options)
        result = objective(student, teacher, labels, idx)
        assert torch.isfinite(result["loss"]) and {"ce", "kd"} <= set(result)
        result["loss"].backward()
        heads = (
            (objective.classifier, objective.kd_head)
            if name == "kd"
            else (objective.label_terms.classifier, objective.label_terms.kd_head)
        )
        assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in heads), name


def test_teacher_logits_take_the_saved_classifier_shape(tmp_path) -> None:
    features = torch.randn(N, DT)
    head = torch.nn.Linear(DT, CT)
    torch.save(head.state_dict(), tmp_path / "classifier.pt")
    logits = _teacher_logits(tmp_path / "classifier.pt", features, "")
    assert logits.shape == (N, CT)
    assert torch.allclose(logits, head(features).detach())
    with pytest.raises(DataError, match="takes 5-dim features, but the teacher encoder gives 7"):
        _teacher_logits(tmp_path / "classifier.pt", torch.randn(N, 7), "somewhere")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="not a linear layer's weights"):
        _teacher_logits(tmp_path / "bad.pt", features, "")
