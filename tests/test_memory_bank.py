"""Memory bank: momentum update, unit norm, duplicate indices, negative sampling."""

from __future__ import annotations

import pytest
import torch

from xmodal.objectives.memory_bank import MemoryBank
from xmodal.objectives.memory_options import MemoryOptions


def _bank(size: int, dim: int, momentum: float = 0.5, **kwargs) -> MemoryBank:
    return MemoryBank(size, MemoryOptions(embed_dim=dim, momentum=momentum), **kwargs)


def test_init_rows_are_unit_and_seeded() -> None:
    bank = _bank(50, 8, seed=3)
    assert bank.memory.shape == (50, 8) and bank.memory.dtype == torch.float32
    torch.testing.assert_close(bank.memory.norm(dim=1), torch.ones(50))
    torch.testing.assert_close(bank.memory, _bank(50, 8, seed=3).memory)
    assert not torch.allclose(bank.memory, _bank(50, 8, seed=4).memory)
    assert "memory" in bank.state_dict()


def test_update_matches_hand_computation() -> None:
    bank = _bank(6, 3, momentum=0.25)
    before = bank.memory.clone().double()
    idx = torch.tensor([4, 1])
    new = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    bank.update(idx, new)
    for row, e in zip(idx.tolist(), new.double(), strict=False):
        mixed = 0.25 * before[row] + 0.75 * e
        want = mixed / mixed.norm()
        torch.testing.assert_close(bank.memory[row].double(), want, atol=1e-6, rtol=0)
    untouched = [0, 2, 3, 5]
    torch.testing.assert_close(bank.memory[untouched].double(), before[untouched])


def test_rows_stay_unit_norm_and_no_grad() -> None:
    bank = _bank(20, 5, momentum=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        idx = torch.randint(0, 20, (7,), generator=g)
        emb = torch.randn(7, 5, generator=g, requires_grad=True) * 3  # not normalised on purpose
        bank.update(idx, emb)
    torch.testing.assert_close(bank.memory.norm(dim=1), torch.ones(20))
    assert not bank.memory.requires_grad


def test_ball_bank_keeps_convex_combinations() -> None:
    bank = _bank(6, 3, momentum=0.5, seed=0, onto="ball")
    old = bank.memory.clone()
    new = torch.tensor([[0.1, 0.0, 0.0], [3.0, 4.0, 0.0]])  # inside the ball; outside (norm 5)
    bank.update(torch.tensor([1, 2]), new)
    torch.testing.assert_close(bank.memory[1], 0.5 * old[1] + 0.5 * new[0])  # no renormalisation
    mixed = 0.5 * old[2] + 0.5 * new[1]
    torch.testing.assert_close(bank.memory[2], mixed / mixed.norm())  # projected back onto the ball
    with pytest.raises(ValueError, match="onto"):
        _bank(6, 3, onto="cube")


def test_momentum_range_is_zero_to_one_open() -> None:
    """``momentum`` in [0, 1): 0 overwrites a row; 1 would freeze the random start rows."""
    bank = _bank(4, 2, momentum=0.0)
    bank.update(torch.tensor([2]), torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(bank.memory[2], torch.tensor([0.6, 0.8]))
    slow = _bank(4, 2, momentum=0.999)
    before = slow.memory.clone()
    slow.update(torch.tensor([2]), torch.tensor([[3.0, 4.0]]))
    moved = float((slow.memory[2] - before[2]).norm())
    assert 0 < moved < 5e-3
    with pytest.raises(ValueError, match=r"momentum=1.0 \(must be in \[0, 1\)\)"):
        MemoryOptions(momentum=1.0)


def test_duplicate_indices_are_averaged_order_free() -> None:
    bank = _bank(5, 3, momentum=0.5)
    before = bank.memory.clone()
    e1 = torch.tensor([1.0, 0.0, 0.0])
    e2 = torch.tensor([0.0, 1.0, 0.0])
    bank.update(torch.tensor([3, 0, 3]), torch.stack([e1, torch.tensor([0.0, 0.0, 1.0]), e2]))
    mixed = 0.5 * before[3] + 0.5 * (e1 + e2) / 2
    torch.testing.assert_close(bank.memory[3], mixed / mixed.norm())
    # Same multiset in another order: identical bank (replicas agree whatever the gather order).
    other = _bank(5, 3, momentum=0.5)
    other.update(torch.tensor([0, 3, 3]), torch.stack([torch.tensor([0.0, 0.0, 1.0]), e2, e1]))
    torch.testing.assert_close(other.memory, bank.memory)


def test_negatives_exclude_and_in_range() -> None:
    bank = _bank(30, 4)
    exclude = torch.tensor([0, 5, 5, 29, 17, 3])
    g = torch.Generator().manual_seed(1)
    seen = torch.zeros(30, dtype=torch.long)
    for _ in range(200):
        neg = bank.sample_negatives(10, exclude=exclude, generator=g)
        assert neg.dtype == torch.long and neg.shape == (10,)
        assert ((neg >= 0) & (neg < 30)).all()
        assert not torch.isin(neg, exclude).any()
        assert neg.unique().numel() == 10  # without replacement
        seen += torch.bincount(neg, minlength=30)
    allowed = torch.ones(30, dtype=torch.bool)
    allowed[exclude] = False
    assert (seen[~allowed] == 0).all()
    # roughly uniform over the 25 allowed rows: expected 80 hits each
    assert seen[allowed].min() > 40 and seen[allowed].max() < 130


def test_negatives_take_all_allowed_rows() -> None:
    bank = _bank(10, 2)
    exclude = torch.tensor([9, 2, 4])
    neg = bank.sample_negatives(7, exclude=exclude)
    assert sorted(neg.tolist()) == [0, 1, 3, 5, 6, 7, 8]
    assert bank.sample_negatives(9).unique().numel() == 9
    with pytest.raises(ValueError):
        bank.sample_negatives(8, exclude=exclude)
    with pytest.raises(ValueError):
        bank.sample_negatives(3, exclude=torch.tensor([10]))


def test_sampling_is_reproducible() -> None:
    a = _bank(100, 2, seed=5).sample_negatives(20)
    b = _bank(100, 2, seed=5).sample_negatives(20)
    assert torch.equal(a, b)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        MemoryBank(1, MemoryOptions(embed_dim=4))
    for name, value in (("embed_dim", 0), ("momentum", 1.5), ("momentum", -0.1)):
        with pytest.raises(ValueError, match=name):
            MemoryOptions(**{name: value})


def test_update_rejects_bad_shapes() -> None:
    bank = _bank(10, 4)
    with pytest.raises(ValueError):
        bank.update(torch.tensor([1, 2]), torch.randn(2, 3))
    with pytest.raises(ValueError):
        bank.update(torch.tensor([1, 10]), torch.randn(2, 4))


def test_labels_buffer() -> None:
    labels = torch.tensor([3, 1, 4, 1, 5, 9], dtype=torch.int32)
    bank = _bank(6, 2, labels=labels)
    assert bank.labels.dtype == torch.long and torch.equal(bank.labels, labels.long())
    labels[0] = 7  # stored as a copy
    assert int(bank.labels[0]) == 3
    assert "labels" in bank.state_dict()
    assert torch.equal(
        bank.labels_of(torch.tensor([[4, 0], [2, 2]])), torch.tensor([[5, 3], [4, 4]])
    )
    plain = _bank(6, 2)
    assert plain.labels is None and "labels" not in plain.state_dict()
    with pytest.raises(ValueError):
        plain.labels_of(torch.tensor([0]))
    restored = _bank(6, 2, labels=torch.zeros(6, dtype=torch.long))
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored.labels, bank.labels)


@pytest.mark.parametrize(
    "labels",
    [torch.zeros(5, dtype=torch.long), torch.zeros(6), torch.zeros(6, dtype=torch.bool), [0] * 6],
)
def test_bad_labels(labels) -> None:
    with pytest.raises(ValueError, match="labels"):
        _bank(6, 2, labels=labels)


def test_negatives_per_anchor() -> None:
    bank = _bank(30, 4)
    exclude = torch.tensor([0, 5, 5, 29, 17, 3])
    g = torch.Generator().manual_seed(2)
    seen = torch.zeros(30, dtype=torch.long)
    any_duplicates = False
    for _ in range(100):
        neg = bank.sample_negatives_per_anchor(8, 6, exclude=exclude, generator=g)
        assert neg.dtype == torch.long and neg.shape == (6, 8)
        assert ((neg >= 0) & (neg < 30)).all() and not torch.isin(neg, exclude).any()
        assert not all(torch.equal(neg[0], row) for row in neg[1:])  # drawn per anchor
        any_duplicates |= any(row.unique().numel() < 8 for row in neg)  # with replacement
        seen += torch.bincount(neg.reshape(-1), minlength=30)
    assert any_duplicates
    allowed = torch.ones(30, dtype=torch.bool)
    allowed[exclude] = False
    assert (seen[~allowed] == 0).all()
    # roughly uniform over the 25 allowed rows: expected 192 hits each
    assert seen[allowed].min() > 130 and seen[allowed].max() < 260
    a = _bank(100, 2, seed=5).sample_negatives_per_anchor(7, 3)
    assert torch.equal(a, _bank(100, 2, seed=5).sample_negatives_per_anchor(7, 3))
    assert bank.sample_negatives_per_anchor(0, 4).shape == (4, 0)
    assert bank.sample_negatives_per_anchor(25, 2, exclude=exclude).shape == (2, 25)
    with pytest.raises(ValueError):
        bank.sample_negatives_per_anchor(26, 2, exclude=exclude)  # same cap as the shared sampler
    with pytest.raises(ValueError):
        bank.sample_negatives_per_anchor(3, -1)
    with pytest.raises(ValueError):
        bank.sample_negatives_per_anchor(3, 2, exclude=torch.tensor([30]))
