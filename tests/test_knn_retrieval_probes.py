"""k-NN and retrieval probes against independent references.

The linear probe against scikit-learn's LogisticRegression.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.evaluation.knn_probe import KNNProbe, KNNProbeOptions, knn_votes
from xmodal.evaluation.linear_probe import (
    LinearProbe,
    LinearProbeOptions,
    fit_logistic,
    standardiser,
)
from xmodal.evaluation.retrieval_probe import RetrievalProbe, match_ranks, ridge_map


def _knn_reference(bank, labels, queries, num_classes, k, t):
    """Plain numpy loop: cosine similarities, top k, exp(s / T) votes."""
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = np.zeros((len(q), num_classes))
    for i, row in enumerate(q @ b.T):
        for j in np.argsort(-row, kind="stable")[:k]:
            out[i, labels[j]] += np.exp(row[j] / t)
    return out


@pytest.mark.parametrize("k", [1, 20, 500])  # 500 > bank size: every row votes
def test_knn_votes_match_a_plain_reference(k):
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(300, 16)), rng.normal(size=(50, 16))
    labels = rng.integers(0, 5, 300)
    ours = knn_votes(
        torch.tensor(bank), torch.tensor(labels), torch.tensor(queries), 5, k, 0.07, chunk=7
    )  # chunks smaller than the query count
    ref = _knn_reference(bank, labels, queries, 5, k, 0.07)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-4)


def test_knn_probe_uses_train_and_val_as_bank_and_scores_test():
    # Each class sits on its own direction; test points are noisy copies of val points only,
    # so the probe must search val too.
    rng = np.random.default_rng(1)
    centres = np.eye(4, 32) * 5

    def split(n, noise):
        y = rng.integers(0, 4, n)
        return torch.tensor(
            centres[y] + noise * rng.normal(size=(n, 32)), dtype=torch.float32
        ), torch.tensor(y)

    train, val, test = split(40, 0.5), split(40, 0.5), split(30, 0.5)
    result = KNNProbe(KNNProbeOptions(k=5)).evaluate(train, val, test, num_classes=4)
    assert result.accuracy == 1.0 and result.mean_class_accuracy == 1.0
    # labels shuffled relative to features: about chance (4 classes)
    shuffled = (test[0], test[1][torch.randperm(30, generator=torch.Generator().manual_seed(0))])
    assert KNNProbe().evaluate(train, val, shuffled, num_classes=4).accuracy < 0.6


def test_knn_probe_refuses_nan_features_and_bad_settings():
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="test features contain NaN"):
        KNNProbe().evaluate((x, y), (x, y), (x.clone().fill_(float("nan")), y), num_classes=1)
    with pytest.raises(ValueError, match=r"invalid k=0 \(must be an integer >= 1\)"):
        KNNProbeOptions(k=0)


def test_match_ranks_agree_with_argsort():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    ranks = match_ranks(torch.tensor(q), torch.tensor(g)).numpy()
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sims = qn @ gn.T
    expected = [1 + int(np.sum(sims[i] > sims[i, i])) for i in range(40)]
    np.testing.assert_array_equal(ranks, expected)


def test_ridge_map_is_the_regularised_least_squares_solution():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(100, 6)), rng.normal(size=(100, 4))
    w = ridge_map(torch.tensor(x), torch.tensor(y), 0.1).numpy()
    # augmented least squares: [x; sqrt(N * 0.1) I] w = [y; 0]
    aug_x = np.vstack([x, np.sqrt(100 * 0.1) * np.eye(6)])
    aug_y = np.vstack([y, np.zeros((6, 4))])
    np.testing.assert_allclose(w, np.linalg.lstsq(aug_x, aug_y, rcond=None)[0], atol=1e-10)


def _pairs(student_of, n=(200, 60, 80), dim=24, seed=4):
    rng = np.random.default_rng(seed)
    teacher = {
        s: torch.tensor(rng.normal(size=(m, dim)))
        for s, m in zip(("train", "val", "test"), n, strict=True)
    }
    return teacher, {s: student_of(t, rng) for s, t in teacher.items()}


def test_retrieval_through_a_linear_map_of_another_size_is_perfect():
    mix = np.random.default_rng(5).normal(size=(24, 40))  # student is 40-d, teacher 24-d
    teacher, student = _pairs(lambda t, rng: t @ torch.tensor(mix))
    out = RetrievalProbe().evaluate_pairs(teacher, student)
    for direction in ("s2t", "t2s"):
        assert out[f"{direction}_recall@1"] == 1.0 and out[f"{direction}_median_rank"] == 1.0


def test_retrieval_of_unrelated_embeddings_is_at_chance():
    teacher, student = _pairs(lambda t, rng: torch.tensor(rng.normal(size=(len(t), 16))))
    out = RetrievalProbe().evaluate_pairs(teacher, student)
    assert out["s2t_recall@1"] < 0.06 and out["s2t_recall@10"] < 0.3  # chance: 1/80, 10/80
    assert 20 < out["s2t_median_rank"] < 60  # chance: about 40 of 80
    assert out["s2t_recall@1"] <= out["s2t_recall@5"] <= out["s2t_recall@10"]


def test_linear_probe_agrees_with_sklearn_logistic_regression():
    """Same standardised features and same penalty as scikit-learn's LogisticRegression.

    Ours minimises mean CE + l2 |W|^2, sklearn C * sum CE + |W|^2 / 2, so C = 1 / (2 N l2); the
    intercept is unpenalised in both.
    """
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(
        n_samples=900,
        n_features=40,
        n_informative=12,
        n_classes=5,
        n_clusters_per_class=2,
        class_sep=0.8,
        random_state=0,
    )
    xtr, ytr, xte, yte = (
        torch.tensor(x[:600]),
        torch.tensor(y[:600]),
        torch.tensor(x[600:]),
        torch.tensor(y[600:]),
    )
    norm = standardiser(xtr)
    for l2 in (1e-3, 1e-2, 1e-1):
        w, b = fit_logistic(norm(xtr), ytr, 5, l2, max_iter=500)
        ours = float(((norm(xte) @ w + b).argmax(1) == yte).double().mean())
        ref = LogisticRegression(C=1 / (2 * 600 * l2), max_iter=5000, tol=1e-10)
        ref.fit(norm(xtr).numpy(), ytr.numpy())
        theirs = ref.score(norm(xte).numpy(), yte.numpy())
        assert abs(ours - theirs) <= 0.01, (l2, ours, theirs)
        np.testing.assert_allclose(w.numpy().T, ref.coef_, atol=1e-4 * np.abs(ref.coef_).max())


def test_linear_probe_separates_separable_features_perfectly():
    rng = np.random.default_rng(6)

    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(size=(n, 10))
        x[:, 0] = 4 * y + rng.uniform(-1, 1, n)  # classes in disjoint slabs along one axis
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    result = LinearProbe(LinearProbeOptions()).evaluate(
        split(150), split(50), split(100), num_classes=3
    )
    assert result.accuracy == 1.0 and result.mean_class_accuracy == 1.0
