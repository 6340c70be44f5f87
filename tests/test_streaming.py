"""Splits streamed from the HDF5 cache: the rows read equal the arrays.

This holds in any order and through any number of DataLoader workers; a run with workers trains
what a run without them trains.
"""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from tiny_scenes import TINY_SCENES

from xmodal.cli.main import main
from xmodal.data.arrays import ArrayDataset, Rows, make_loader
from xmodal.data.hdf5_split import HDF5Split, as_long


@pytest.fixture
def cache(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.standard_normal((50, 3, 4)).astype(np.float32),
        "label": rng.integers(0, 5, 50).astype(np.int16),
    }
    path = tmp_path / "cache.h5"
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(f"train/{key}", data=value, chunks=(8, *value.shape[1:]))
    return path, arrays


@pytest.mark.parametrize("budget", [0, 10**9], ids=["streamed", "kept-in-memory"])
def test_rows_read_equal_the_arrays_in_any_order_with_repeats(cache, monkeypatch, budget):
    monkeypatch.setattr("xmodal.data.hdf5_split.IN_MEMORY_BYTES", budget)
    path, arrays = cache
    rows = np.array([7, 3, 40, 41, 42, 0, 49])  # a split's rows, not in file order
    split = HDF5Split(
        path, {"x": "train/x", "label": "train/label"}, rows=rows, transforms={"label": as_long}
    )
    assert len(split) == 7 and split.keys() == ["x", "label"] and "x" in split
    asked = [6, 0, 0, 2, 5]  # unsorted, repeated
    batch = split.__getitems__(asked)
    np.testing.assert_array_equal(batch["x"].numpy(), arrays["x"][rows[asked]])
    assert (
        batch["label"].dtype == torch.long
        and batch["label"].tolist() == arrays["label"][rows[asked]].tolist()
    )
    assert batch["index"].tolist() == asked
    np.testing.assert_array_equal(split.read("x", slice(2, 5)).numpy(), arrays["x"][[40, 41, 42]])
    np.testing.assert_array_equal(Rows(split, "x", slice(1, 6))[1:3].numpy(), arrays["x"][[40, 41]])
    copy = pickle.loads(pickle.dumps(split))  # what a spawned worker gets: no open handle
    assert torch.equal(copy.read("label", [2]), split.read("label", [2]))
    split.derive("x2", "x", lambda t, r: t * 2)
    np.testing.assert_allclose(split.read("x2", [1]).numpy(), 2 * arrays["x"][[3]])
    # kept in memory exactly when under the budget: the split's 7 rows, not the file's 50
    kept = split._memory.get("train/x")
    assert (kept is None) if budget == 0 else kept.shape == (7, 3, 4)


def test_a_selected_view_reads_and_derives_only_its_columns(cache):
    path, arrays = cache
    split = HDF5Split(path, {"x": "train/x", "label": "train/label"}, transforms={"label": as_long})
    derived = []
    split.derive("x2", "x", lambda t, r: derived.append(len(r)) or t * 2)
    view = split.select(["label"])
    batch = view.__getitems__([4, 1])
    assert sorted(batch) == ["index", "label"] and derived == []
    assert batch["label"].tolist() == arrays["label"][[4, 1]].tolist() and len(view) == 50
    assert split.__getitems__([4])["x2"].shape == (1, 3, 4) and derived == [1]  # untouched
    memory = ArrayDataset({k: torch.from_numpy(v) for k, v in arrays.items()}).select(["x"])
    assert memory.keys() == ["x"] and torch.equal(
        memory.read("x", [3]), torch.from_numpy(arrays["x"][[3]])
    )
    with pytest.raises(KeyError, match="no column"):
        split.select(["depth"])


def test_streamed_and_in_memory_splits_give_the_same_batches_through_workers(cache):
    path, arrays = cache
    streamed = HDF5Split(path, {"x": "train/x", "label": "train/label"})
    in_memory = ArrayDataset({k: torch.from_numpy(v) for k, v in arrays.items()})
    batches = {}
    for name, data, workers in (
        ("memory", in_memory, 0),
        ("stream", streamed, 0),
        ("workers", streamed, 2),
    ):
        loader = make_loader(data, 8, shuffle=True, seed=3, drop_last=True, num_workers=workers)
        batches[name] = [(b["index"].tolist(), b["x"]) for epoch in range(2) for b in loader]
    for name in ("stream", "workers"):
        assert [i for i, _ in batches[name]] == [i for i, _ in batches["memory"]]
        assert all(
            torch.equal(a, b)
            for (_, a), (_, b) in zip(batches[name], batches["memory"], strict=True)
        )


def test_a_corrupt_cache_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(Exception, match="unreadable or incomplete"):
        HDF5Split(bad, {"x": "train/x"})


def test_a_run_with_loader_workers_trains_what_a_run_without_them_trains(tmp_path):
    tiny = [
        *TINY_SCENES,
        "distill.students=[depth]",
        "distill.methods=[wcord]",
        "distill.wcord.num_negatives=16",
        "probe.probes=[linear]",
    ]
    results = []
    for workers in (0, 2):
        argv = [
            "run",
            "scenes",
            "--out",
            str(tmp_path / f"w{workers}"),
            "--set",
            f"data.num_workers={workers}",
        ]
        for item in tiny:
            argv += ["--set", item]
        assert main(argv) == 0
        results.append(json.loads((tmp_path / f"w{workers}" / "results.json").read_text()))
    assert [(r["method"], r["value"]) for r in results[0]] == [
        (r["method"], r["value"]) for r in results[1]
    ]
    weights = [
        torch.load(tmp_path / f"w{w}" / "distill/seed0/depth/wcord/encoder.pt", weights_only=True)[
            "state_dict"
        ]
        for w in (0, 2)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
