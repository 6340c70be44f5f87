"""Exported encoders: safetensors + JSON round trip, and refusal of anything else."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest
import torch

import xmodal
from xmodal.core.errors import DataError
from xmodal.encoders import create_encoder
from xmodal.encoders.export import (
    META_FILE,
    WEIGHTS_FILE,
    export_encoder,
    load_encoder,
    save_encoder,
)


def _trained_like(modality: str, frontend: dict, seed: int = 0):
    """An encoder whose weights and BatchNorm statistics are all non-default."""
    torch.manual_seed(seed)
    encoder = create_encoder("resnet8", modality, frontend)
    with torch.no_grad():
        for tensor in encoder.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn_like(tensor)).abs_()  # abs: valid running_var
    return encoder.eval()


@pytest.mark.parametrize(
    "modality, frontend, batch",
    [
        ("depth", {}, lambda: 1 + 5 * torch.rand(4, 16, 16)),
        ("audio", {"sample_rate": 4000, "n_mels": 16}, lambda: torch.rand(4, 2000) * 2 - 1),
    ],
)
def test_round_trip_gives_the_same_embeddings(tmp_path, modality, frontend, batch):
    encoder = _trained_like(modality, frontend)
    meta_path = export_encoder(
        encoder,
        tmp_path,
        "resnet8",
        {},
        frontend,
        "9.9",
        "cfg123",
        extra={"method": "wcord", "seed": 3},
    )
    loaded = xmodal.load_encoder(tmp_path)  # the top-level entry point, from the directory
    assert not loaded.training
    x = batch()
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))
    meta = json.loads(meta_path.read_text())
    assert (meta["backbone"], meta["modality"], meta["embed_dim"]) == ("resnet8", modality, 64)
    assert (meta["frontend_options"], meta["config_hash"], meta["xmodal_version"]) == (
        frontend,
        "cfg123",
        "9.9",
    )
    assert meta["extra"] == {"method": "wcord", "seed": 3}
    for name in (META_FILE, WEIGHTS_FILE):  # either file names the export too
        with torch.no_grad():
            assert torch.equal(load_encoder(tmp_path / name)(x), encoder(x))


def test_pretrained_option_is_not_refetched_on_load(tmp_path):
    encoder = _trained_like("depth", {})
    export_encoder(encoder, tmp_path, "resnet8", {"pretrained": "/nonexistent.pth"}, {})
    # resnet8 would reject the unknown option: loading must drop it, the weights are in the file
    x = 1 + torch.rand(2, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_encoder(tmp_path)(x), encoder(x))


class _Payload:
    def __reduce__(self):
        return (open, ("/tmp/xmodal-pwned-marker", "w"))


def test_a_crafted_pickle_is_refused_without_running_it(tmp_path):
    export_encoder(_trained_like("depth", {}), tmp_path, "resnet8", {}, {})
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(pickle.dumps({"backbone": _Payload()}))
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()  # even "signed"
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    marker = "/tmp/xmodal-pwned-marker"
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_encoder(tmp_path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / WEIGHTS_FILE).write_bytes(b"\x00" * 64), "does not match the SHA-256"),
        (lambda d: (d / META_FILE).write_text("{not json"), "is not valid JSON"),
        (
            lambda d: (d / META_FILE).write_text('{"format": "other"}'),
            "not an xmodal encoder description",
        ),
        (
            lambda d: (d / META_FILE).write_text(
                json.dumps({**json.loads((d / META_FILE).read_text()), "embed_dim": "64"})
            ),
            "key 'embed_dim' must be an integer",
        ),
        (
            lambda d: (d / META_FILE).write_text(
                json.dumps({**json.loads((d / META_FILE).read_text()), "version": 99})
            ),
            "upgrade xmodal",
        ),
        (lambda d: (d / WEIGHTS_FILE).unlink(), "encoder.safetensors is missing"),
    ],
)
def test_damaged_exports_raise_one_clear_error(tmp_path, damage, fragment):
    export_encoder(_trained_like("depth", {}), tmp_path, "resnet8", {}, {})
    damage(tmp_path)
    with pytest.raises(DataError, match=fragment):
        load_encoder(tmp_path)


def test_weights_of_another_backbone_are_refused(tmp_path):
    export_encoder(_trained_like("depth", {}), tmp_path, "resnet8", {}, {})
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "backbone": "resnet14"}))
    with pytest.raises(DataError, match="does not fit backbone 'resnet14'"):
        load_encoder(tmp_path)


def test_a_foreign_file_is_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(DataError, match="model.pt' is unreadable"):
        load_encoder(tmp_path / "model.pt")
    (tmp_path / "notes.txt").write_text("{}")
    with pytest.raises(DataError, match="notes.txt' is unreadable"):
        load_encoder(tmp_path / "notes.txt")


def test_encoder_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = create_encoder("resnet8", "audio", {"sample_rate": 8000}).eval()
    path = save_encoder(enc, tmp_path / "enc.pt", "resnet8", {}, {"sample_rate": 8000})
    again = load_encoder(path)
    assert not again.training
    x = torch.randn(2, 4000) * 0.3
    assert torch.equal(enc(x), again(x))


def test_one_loader_reads_a_checkpoint_and_an_export_alike(tmp_path):
    encoder = _trained_like("depth", {})
    save_encoder(encoder, tmp_path / "encoder.pt", "resnet8", {}, {}, extra={"method": "none"})
    export_encoder(encoder, tmp_path, "resnet8", {}, {})
    x = 1 + 5 * torch.rand(3, 16, 16)
    with torch.no_grad():
        from_checkpoint, from_export = (
            load_encoder(tmp_path / name)(x) for name in ("encoder.pt", META_FILE)
        )
        assert torch.equal(from_checkpoint, encoder(x)) and torch.equal(from_export, encoder(x))


def test_a_checkpoint_rebuilds_without_its_initial_weights_file(tmp_path):
    """The checkpoint holds the weights: the file ``pretrained`` named is not read again."""
    torch.manual_seed(0)
    encoder = create_encoder("resnet18", "rgb").eval()
    gone = str(tmp_path / "moved-away.pth")
    path = save_encoder(encoder, tmp_path / "encoder.pt", "resnet18", {"pretrained": gone}, {})
    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(load_encoder(path)(x), encoder(x))


def test_corrupt_checkpoints_name_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.pt' is unreadable"):
        load_encoder(bad)
    other = tmp_path / "other.pt"
    torch.save({"state": 1}, other)
    with pytest.raises(DataError, match="not an xmodal encoder checkpoint"):
        load_encoder(other)
    with pytest.raises(DataError, match="does not exist"):
        load_encoder(tmp_path / "missing.pt")
    encoder = create_encoder("resnet8", "depth")
    save_encoder(encoder, tmp_path / "renamed.pt", "no-such-backbone", {}, {})
    with pytest.raises(DataError) as info:
        load_encoder(tmp_path / "renamed.pt")
    message = str(info.value)
    assert "\n" not in message and "renamed.pt' does not rebuild its encoder" in message
    assert "save the encoder again" in message
    torch.save({**torch.load(tmp_path / "renamed.pt"), "name": "resnet14"}, other)
    with pytest.raises(DataError, match="other.pt' does not fit backbone 'resnet14'"):
        load_encoder(other)
