"""The cache (xmodal.core.cache): atomic writes, content digests, keyed entries and units."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xmodal.core.cache import (
    KeyedEntry,
    Unit,
    file_digest,
    load_keyed,
    read_keyed,
    save_atomic,
    save_keyed,
    value_digest,
)


def test_unit_caching_keys_on_inputs(tmp_path):
    unit = Unit(tmp_path / "u", {"a": 1})
    assert unit.record() is None
    unit.finish({"value": 3})
    assert Unit(tmp_path / "u", {"a": 1}).record() == {"value": 3, "files": {}}
    assert Unit(tmp_path / "u", {"a": 2}).record() is None  # changed input -> recompute
    (tmp_path / "u" / "done.json").write_text('{"key": ')  # torn write
    assert Unit(tmp_path / "u", {"a": 1}).record() is None


def test_unit_done_json_layout_is_unchanged(tmp_path):
    """Runs made before the cache moved to core must still be reused: same bytes."""
    unit = Unit(tmp_path / "u", {"a": 1, "b": [1, 2]})
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "w.bin").write_bytes(b"weights")
    record = unit.finish({"value": 3}, files=["w.bin"])
    digest = hashlib.sha256(b"weights").hexdigest()[:16]
    assert record == {"value": 3, "files": {"w.bin": digest}}
    expected = {"key": unit.key, "inputs": {"a": 1, "b": [1, 2]}, "record": record}
    assert unit.done_file.read_text() == json.dumps(expected, indent=2, default=str)


def test_a_unit_vouches_for_its_files_and_says_why_it_recomputes(tmp_path):
    said = []
    unit = Unit(tmp_path / "u", {"a": 1}, notice=said.append)
    unit.directory.mkdir()
    (unit.directory / "w.bin").write_bytes(b"weights")
    unit.finish({"value": 3}, files=["w.bin"])
    assert unit.record(files=["w.bin"])["value"] == 3 and said == []
    moved = Path(shutil.move(tmp_path / "u", tmp_path / "moved"))  # paths are relative
    assert Unit(moved, {"a": 1}).record(files=["w.bin"])["value"] == 3
    unit = Unit(moved, {"a": 1}, notice=said.append)
    assert unit.record(files=["other.bin"]) is None  # vouches for fewer files than asked
    assert said[-1] == f"{moved}: its done.json is malformed; recomputing it"
    (moved / "w.bin").write_bytes(b"changed")
    assert unit.record() is None
    assert said[-1] == f"{moved}: w.bin does not match the digest in done.json; recomputing it"
    (moved / "w.bin").unlink()
    assert unit.record() is None
    assert said[-1] == f"{moved}: w.bin is missing; recomputing it"
    assert Unit(moved, {"a": 2}, notice=said.append).record() is None
    assert len(said) == 3  # other inputs: recomputed without a word


def test_a_unit_takes_the_main_process_answer(tmp_path):
    unit = Unit(tmp_path / "u", {"a": 1})
    unit.finish({"value": 3})
    assert Unit(tmp_path / "u", {"a": 1}, agree=lambda value: None).record() is None
    worker = Unit(tmp_path / "w", {"a": 1}, is_main=False)
    assert worker.finish({"value": 3}) == {"value": 3, "files": {}}
    assert not worker.done_file.exists()  # only the main process writes


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    save_atomic({"x": 1}, target)

    def broken_save(obj, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_atomic({"x": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_keyed_entry_round_trip_and_every_reason_to_refuse_one(tmp_path):
    path = tmp_path / "features.pt"
    value = {"train": torch.arange(6.0).reshape(2, 3), "n": 2}
    assert load_keyed(path, "k") == (None, "missing")
    digest = save_keyed(value, path, "k")
    assert digest == value_digest(value) and len(digest) == 16
    entry, why = read_keyed(path, "k")
    assert why is None and isinstance(entry, KeyedEntry) and entry.digest == digest
    assert torch.equal(entry.value["train"], value["train"]) and entry.value["n"] == 2
    assert load_keyed(path, "other")[1] == f"'{path}' was computed from other inputs"
    changed = {"key": "k", "value": {**value, "n": 3}, "digest": digest}
    torch.save(changed, path)
    assert load_keyed(path, "k")[1].startswith(f"'{path}' does not match the content digest")
    torch.save({"key": "k", "value": value}, path)
    assert (
        load_keyed(path, "k")[1] == f"'{path}' has no content digest (written by an older xmodal)"
    )
    path.write_bytes(b"\x80\x02torn")
    assert load_keyed(path, "k") == (None, f"'{path}' is unreadable")


def test_value_digest_is_of_the_content_not_the_storage():
    base = torch.arange(12.0).reshape(3, 4)
    strided = base.t().contiguous().t()  # same values, another memory layout
    assert not strided.is_contiguous()
    assert value_digest({"a": base, "b": 1}) == value_digest({"b": 1, "a": strided})
    assert value_digest(base) != value_digest(base.double())  # dtype counts
    assert value_digest(base) != value_digest(base.reshape(4, 3))  # shape counts
    assert value_digest([1, 2]) != value_digest((1, 2))
    assert value_digest(torch.zeros(0)) != value_digest(torch.zeros(0, 2))
    with pytest.raises(TypeError, match="cannot digest a object"):
        value_digest(object())
    with pytest.raises(TypeError, match="sparse"):
        value_digest(base.to_sparse())


def test_file_digest_is_a_prefix_of_the_sha256(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000  # over one read block
    path.write_bytes(data)
    full = hashlib.sha256(data).hexdigest()
    assert file_digest(path) == full[:16]
    assert file_digest(path, length=64) == full


def test_the_cache_and_the_lock_load_no_torch():
    code = (
        "import sys, xmodal.core.cache, xmodal.core.lock, xmodal.core.records; "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
