"""Memory bank: momentum update, unit norm, duplicate indices, negative sampling."""

from __future__ import annotations

import pytest
import torch

from xmodal.objectives.memory_bank import MemoryBank


def test_init_rows_are_unit_and_seeded() -> None:
    bank = MemoryBank(50, 8, seed=3)
    assert bank.memory.shape == (50, 8) and bank.memory.dtype == torch.float32
    torch.testing.assert_close(bank.memory.norm(dim=1), torch.ones(50))
    torch.testing.assert_close(bank.memory, MemoryBank(50, 8, seed=3).memory)
    assert not torch.allclose(bank.memory, MemoryBank(50, 8, seed=4).memory)
    assert "memory" in bank.state_dict()


def test_update_matches_hand_computation() -> None:
    bank = MemoryBank(6, 3, momentum=0.25)
    before = bank.memory.clone().double()
    idx = torch.tensor([4, 1])
    new = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    bank.update(idx, new)
    for row, e in zip(idx.tolist(), new.double()):
        mixed = 0.25 * before[row] + 0.75 * e
        want = mixed / mixed.norm()
        torch.testing.assert_close(bank.memory[row].double(), want, atol=1e-6, rtol=0)
    untouched = [0, 2, 3, 5]
    torch.testing.assert_close(bank.memory[untouched].double(), before[untouched])


def test_rows_stay_unit_norm_and_no_grad() -> None:
    bank = MemoryBank(20, 5, momentum=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        idx = torch.randint(0, 20, (7,), generator=g)
        emb = torch.randn(7, 5, generator=g, requires_grad=True) * 3  # not normalised on purpose
        bank.update(idx, emb)
    torch.testing.assert_close(bank.memory.norm(dim=1), torch.ones(20))
    assert not bank.memory.requires_grad


def test_momentum_extremes() -> None:
    bank = MemoryBank(4, 2, momentum=0.0)
    bank.update(torch.tensor([2]), torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(bank.memory[2], torch.tensor([0.6, 0.8]))
    frozen = MemoryBank(4, 2, momentum=1.0)
    before = frozen.memory.clone()
    frozen.update(torch.tensor([2]), torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(frozen.memory, before)


def test_duplicate_indices_are_averaged_order_free() -> None:
    bank = MemoryBank(5, 3, momentum=0.5)
    before = bank.memory.clone()
    e1 = torch.tensor([1.0, 0.0, 0.0])
    e2 = torch.tensor([0.0, 1.0, 0.0])
    bank.update(torch.tensor([3, 0, 3]), torch.stack([e1, torch.tensor([0.0, 0.0, 1.0]), e2]))
    mixed = 0.5 * before[3] + 0.5 * (e1 + e2) / 2
    torch.testing.assert_close(bank.memory[3], mixed / mixed.norm())
    # Same multiset in another order: identical bank (replicas agree whatever the gather order).
    other = MemoryBank(5, 3, momentum=0.5)
    other.update(torch.tensor([0, 3, 3]), torch.stack([torch.tensor([0.0, 0.0, 1.0]), e2, e1]))
    torch.testing.assert_close(other.memory, bank.memory)


def test_negatives_exclude_and_in_range() -> None:
    bank = MemoryBank(30, 4)
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
    bank = MemoryBank(10, 2)
    exclude = torch.tensor([9, 2, 4])
    neg = bank.sample_negatives(7, exclude=exclude)
    assert sorted(neg.tolist()) == [0, 1, 3, 5, 6, 7, 8]
    assert bank.sample_negatives(9).unique().numel() == 9
    with pytest.raises(ValueError):
        bank.sample_negatives(8, exclude=exclude)
    with pytest.raises(ValueError):
        bank.sample_negatives(3, exclude=torch.tensor([10]))


def test_sampling_is_reproducible() -> None:
    a = MemoryBank(100, 2, seed=5).sample_negatives(20)
    b = MemoryBank(100, 2, seed=5).sample_negatives(20)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [dict(size=1, dim=4), dict(size=10, dim=0), dict(size=10, dim=4, momentum=1.5),
     dict(size=10, dim=4, momentum=-0.1)],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MemoryBank(**kwargs)


def test_update_rejects_bad_shapes() -> None:
    bank = MemoryBank(10, 4)
    with pytest.raises(ValueError):
        bank.update(torch.tensor([1, 2]), torch.randn(2, 3))
    with pytest.raises(ValueError):
        bank.update(torch.tensor([1, 10]), torch.randn(2, 4))
