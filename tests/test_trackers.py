"""Experiment trackers through Accelerate, for ``xmodal run`` and ``xmodal probe``.

TensorBoard event files hold every loss term and the learning rate per step, and the probe
results; missing tracker packages fail at load.
"""

from __future__ import annotations

import pytest
from tiny_scenes import TINY_SCENES

from xmodal.cli.main import main

pytest.importorskip("tensorboard")

TINY = [
    *TINY_SCENES,
    "distill.optim.epochs=2",
    "distill.students=[depth]",
    "distill.methods=[none,wcord]",
    "runtime.log_with=[tensorboard]",
]


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for events in log_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    return out


def test_tensorboard_event_files_hold_the_loss_terms_and_probe_results(tmp_path):
    import json

    argv = ["run", "scenes", "--out", str(tmp_path)]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    scalars = _scalars(tmp_path / "logs")
    unit = "distill/seed0/depth/wcord"
    steps_per_epoch = 48 // 16
    for term in ("loss", "global", "local", "lr"):
        assert f"{unit}/{term}" in scalars, sorted(scalars)
        assert [s for s, _ in scalars[f"{unit}/{term}"]] == list(range(1, 2 * steps_per_epoch + 1))
    # the per-step values average to the epoch means in history.json
    history = json.loads((tmp_path / unit / "history.json").read_text())
    losses = [v for _, v in scalars[f"{unit}/loss"]]
    for epoch, record in enumerate(history):
        chunk = losses[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]
        assert sum(chunk) / len(chunk) == pytest.approx(record["loss"], rel=1e-5)
        assert scalars[f"{unit}/lr"][(epoch + 1) * steps_per_epoch - 1][1] == pytest.approx(
            record["lr"]
        )
    rows = json.loads((tmp_path / "results.json").read_text())
    for row in rows:
        tag = f"probe/{row['modality']}/{row['method']}/{row['probe']}/{row['metric']}/seed0"
        assert scalars[tag][0][1] == pytest.approx(row["value"])


def test_a_tracker_whose_package_is_missing_fails_at_load(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    assert main(["run", "scenes", "--set", "runtime.log_with=[wandb]"]) == 2
    assert "'wandb' needs the package 'wandb': pip install wandb" in capsys.readouterr().err


def test_probe_logs_its_results_to_the_trackers(tmp_path):
    import json

    argv = ["probe", "resnet8", "--modality", "rgb", "--data", "scenes", "--out", str(tmp_path)]
    argv += ["--probes", "linear,knn"]
    for item in [*TINY[:4], "probe.linear.l2_grid=[0.001]", "probe.linear.max_iter=20"]:
        argv += ["--set", item]
    assert main([*argv, "--set", "runtime.log_with=[tensorboard]"]) == 0
    scalars = _scalars(tmp_path / "logs")
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {r["probe"] for r in rows} == {"linear", "knn"}
    assert len(scalars) == len(rows)  # one scalar per row, nothing else
    for row in rows:
        tag = f"probe/rgb/resnet8/{row['probe']}/{row['metric']}/seed0"
        assert [v for _, v in scalars[tag]] == [pytest.approx(row["value"])]
