"""End to end: ``xmodal run scenes`` at a tiny size, results schema, caching and resume."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tiny_scenes import TINY_SCENES

from xmodal.cli.main import main

TINY = [
    *TINY_SCENES,
    "distill.students=[depth,audio]",  # both (the shipped config distils depth alone)
]


def _argv(out, *extra):
    argv = ["run", "scenes", "--out", str(out)]
    for item in (*TINY, *extra):
        argv += ["--set", item]
    return argv


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(_argv(out)) == 0
    return out


def test_results_rows_cover_every_model(tiny_run):
    rows = json.loads((tiny_run / "results.json").read_text())
    assert {"modality", "method", "probe", "metric", "value"} <= set(rows[0])
    models = {(r["modality"], r["method"]) for r in rows}
    assert models == {("rgb", "teacher")} | {
        (m, k) for m in ("depth", "audio") for k in ("none", "supervised", "wcord")
    }
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if not r["metric"].endswith("median_rank"))
    assert {r["probe"] for r in rows} == {"linear", "knn", "retrieval"}  # the shipped config's
    assert {r["role"] for r in rows if r["probe"] == "retrieval"} == {"student"}
    wcord = next(r for r in rows if r["method"] == "wcord")
    assert wcord["hparams"]["tau"] == 0.07 and wcord["hparams"]["num_negatives"] == 32
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["config"]["data"]["scenes"]["image_size"] == 16
    with_gap = {
        f"{e['modality']}/{e['method']}/{e['probe']}/{e['metric']}"
        for e in summary["summary"]
        if e["gap_closed"] is not None
    }
    assert set(summary["gap_closed_per_seed"]) == with_gap
    report = (tiny_run / "report.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert len(figures) >= 4 and all((tiny_run / f).read_bytes()[:4] == b"\x89PNG" for f in figures)
    assert (tiny_run / "results.csv").read_text().startswith("modality,method,probe,metric,value")
    assert (tiny_run / "config.yaml").is_file()
    assert not list(tiny_run.rglob("train-state.pt"))  # resume states go once units finish


def test_rerun_skips_finished_units_and_recomputes_changed_ones(tiny_run, capsys):
    teacher_ckpt = tiny_run / "teacher" / "seed0" / "encoder.pt"
    student_ckpt = tiny_run / "distill" / "seed0" / "depth" / "wcord" / "encoder.pt"
    data = tiny_run / "data" / "scenes" / "data.h5"
    stamps = {p: p.stat().st_mtime_ns for p in (teacher_ckpt, student_ckpt, data)}
    capsys.readouterr()
    assert main(_argv(tiny_run)) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert "cached" in capsys.readouterr().out
    # a student-only change keeps data and teacher, retrains the students
    assert main(_argv(tiny_run, "distill.wcord.tau=0.1")) == 0
    assert data.stat().st_mtime_ns == stamps[data]
    assert teacher_ckpt.stat().st_mtime_ns == stamps[teacher_ckpt]
    assert student_ckpt.stat().st_mtime_ns != stamps[student_ckpt]
    rows = json.loads((tiny_run / "results.json").read_text())
    assert next(r for r in rows if r["method"] == "wcord")["hparams"]["tau"] == 0.1


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    """A crash in the probe stage keeps the finished training units; the rerun reuses them."""
    import xmodal.pipelines.stages.probe as probe_stage

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(probe_stage, "_frozen_entry", boom)
    assert main(_argv(tmp_path, "distill.students=[depth]", "distill.methods=[none,wcord]")) == 130
    ckpt = tmp_path / "distill" / "seed0" / "depth" / "wcord" / "encoder.pt"
    stamp = ckpt.stat().st_mtime_ns
    monkeypatch.undo()
    assert main(_argv(tmp_path, "distill.students=[depth]", "distill.methods=[none,wcord]")) == 0
    assert ckpt.stat().st_mtime_ns == stamp
    assert (tmp_path / "results.json").is_file()


def test_methods_side_by_side_over_seeds(tmp_path, capsys):
    methods = [
        "none",
        "supervised",
        "kd",
        "fitnet",
        "crd",
        "rkd",
        "pkt",
        "infonce",
        "wcord",
        "wcord-global",
        "wcord-local",
    ]
    # the transfer teacher has 6 object classes of its own against the 8 scene classes: kd and
    # wcord's beta read its logits through a KD head of 6; wcord's alpha a classifier of 8
    assert (
        main(
            _argv(
                tmp_path,
                "distill.students=[depth]",
                f"distill.methods=[{','.join(methods)}]",
                "seeds=[0,1]",
                "distill.crd.num_negatives=32",
                "distill.wcord.alpha=0.5",
                "distill.wcord.beta=1.0",
            )
        )
        == 0
    )
    assert "logits over its own 6 classes (the dataset has 8)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    accuracy = {
        e["method"]: e for e in summary if e["metric"] == "accuracy" and e["modality"] == "depth"
    }
    assert set(accuracy) == set(methods)
    assert all(e["n"] == 2 and len(e["values"]) == 2 for e in accuracy.values())
    rows = json.loads((tmp_path / "results.json").read_text())
    crd = next(r for r in rows if r["method"] == "crd")
    assert crd["hparams"]["num_negatives"] == 32 and crd["hparams"]["tau"] == 0.07
    assert next(r for r in rows if r["method"] == "wcord-local")["hparams"]["lambda_global"] == 0.0
    assert _teacher_outputs(tmp_path)["logits"].shape == (48, 6)
    students = tmp_path / "distill" / "seed0" / "depth"
    for method in ("kd", "wcord", "wcord-global", "wcord-local"):
        last = json.loads((students / method / "history.json").read_text())[-1]
        assert last["kd"] >= 0.0 and ("ce" in last) == method.startswith("wcord"), method
    assert not (students / "kd" / "classifier.pt").exists()  # a KD head, no scene classifier
    scenes = torch.load(students / "wcord" / "classifier.pt", weights_only=True)["weight"]
    assert scenes.shape[0] == 8  # the alpha term's classifier, over the scene classes


def _teacher_outputs(run):
    (entry,) = [
        torch.load(p, weights_only=True) for p in (run / "teacher" / "seed0").glob("outputs-*.pt")
    ]
    return entry["value"]


def test_a_six_class_teacher_checkpoint_under_probe_labels(tiny_run, tmp_path):
    """The transfer teacher's folder as teacher.checkpoint on the 8-class scenes.

    Its logits keep its 6 classes, and kd and wcord.beta run (a raw 'size mismatch' traceback
    before).
    """
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "data", run / "data")  # the generated scenes, not regenerated
    assert (
        main(
            _argv(
                run,
                "distill.students=[depth]",
                "distill.methods=[kd,wcord]",
                "distill.wcord.beta=1.0",
                "teacher.task=probe-labels",
                f"teacher.checkpoint={tiny_run / 'teacher' / 'seed0'}",
            )
        )
        == 0
    )
    assert _teacher_outputs(run)["logits"].shape == (48, 6)
    last = json.loads((run / "distill" / "seed0" / "depth" / "wcord" / "history.json").read_text())[
        -1
    ]
    assert last["kd"] >= 0.0 and "ce" not in last


def test_wcord_options_reach_the_loss(tmp_path):
    assert (
        main(
            _argv(
                tmp_path,
                "distill.students=[depth]",
                "distill.methods=[wcord]",
                "distill.wcord.critic=mlp",
                "distill.wcord.critic_hidden=16",
                "distill.wcord.lipschitz=gradient_penalty",
                "distill.wcord.negatives=other_class",
            )
        )
        == 0
    )
    history = json.loads((tmp_path / "distill/seed0/depth/wcord/history.json").read_text())
    assert history[-1]["penalty"] >= 0.0
    rows = json.loads((tmp_path / "results.json").read_text())
    hp = next(r for r in rows if r["method"] == "wcord")["hparams"]
    assert (hp["critic"], hp["lipschitz"], hp["negatives"]) == (
        "mlp",
        "gradient_penalty",
        "other_class",
    )


def test_batch_covering_the_whole_train_split_is_one_clear_error(tiny_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")  # reuse the cached data and teacher
    argv = _argv(run, "distill.methods=[wcord]", "distill.optim.batch_size=64")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lower distill.optim.batch_size" in err[0] and "48" in err[0]


def test_distillation_killed_mid_training_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    from xmodal.encoders.export import load_encoder
    from xmodal.training import loop

    extra = ("distill.students=[depth]", "distill.methods=[wcord]", "distill.optim.epochs=2")
    assert main(_argv(tmp_path / "whole", *extra)) == 0
    real_save = loop.save_train_state

    def save_then_die(path, key, epoch, *args, **kwargs):
        real_save(path, key, epoch, *args, **kwargs)
        if path.parent.name == "wcord" and epoch == 1:  # the distillation unit, not the teacher
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_train_state", save_then_die)
    assert main(_argv(tmp_path / "cut", *extra)) == 130
    state = tmp_path / "cut" / "distill" / "seed0" / "depth" / "wcord" / "train-state.pt"
    assert state.is_file()
    monkeypatch.undo()
    assert main(_argv(tmp_path / "cut", *extra)) == 0
    assert not state.exists()
    unit = ("distill", "seed0", "depth", "wcord", "encoder.pt")
    a = load_encoder(tmp_path.joinpath("whole", *unit)).state_dict()
    b = load_encoder(tmp_path.joinpath("cut", *unit)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


_KILL_MID_EPOCH = """
import os, signal, sys
from xmodal.training import loop
from xmodal.cli.main import main

real_save = loop.save_train_state

def save_then_die(path, key, epoch, *args, step=0, **kwargs):
    real_save(path, key, epoch, *args, step=step, **kwargs)
    if path.parent.name == "wcord" and epoch == 1 and step == 2:  # epoch 2, step 2 of 3
        os.kill(os.getpid(), signal.SIGKILL)

loop.save_train_state = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_mid_epoch_resumes_there_with_identical_weights(tmp_path):
    """A real SIGKILL inside the second epoch of a distillation unit.

    With runtime.checkpoint_every=1, the rerun of the same command resumes at that step.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    from xmodal.encoders.export import load_encoder

    extra = (
        "distill.students=[depth]",
        "distill.methods=[wcord]",
        "distill.optim.epochs=2",
        "runtime.checkpoint_every=1",
        "runtime.threads=1",  # this process and the killed one compute alike
    )
    assert main(_argv(tmp_path / "whole", *extra)) == 0
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_MID_EPOCH, *_argv(tmp_path / "cut", *extra)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    unit = tmp_path / "cut" / "distill" / "seed0" / "depth" / "wcord"
    state = torch.load(unit / "train-state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert not (unit / "done.json").exists()
    assert main(_argv(tmp_path / "cut", *extra)) == 0
    a = load_encoder(tmp_path / "whole" / unit.relative_to(tmp_path / "cut") / "encoder.pt")
    b = load_encoder(unit / "encoder.pt")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert json.loads((tmp_path / "cut" / "results.json").read_text()) == whole


def test_segmentation_probe_on_scenes_skips_audio(tiny_run, tmp_path):
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")  # students are cached; only probes run
    assert (
        main(
            _argv(
                run,
                "probe.probes=[linear,segmentation]",
                "probe.segmentation.epochs=2",
                "probe.segmentation.weight_decay_grid=[0.0]",
            )
        )
        == 0
    )
    rows = json.loads((run / "results.json").read_text())
    seg = {(r["modality"], r["method"]) for r in rows if r["probe"] == "semantic"}
    assert ("depth", "wcord") in seg and ("rgb", "teacher") in seg
    assert not any(modality == "audio" for modality, _ in seg)
    for r in rows:
        if r["probe"] == "semantic":
            assert 0.0 <= r["value"] <= 1.0 and r["metric"] in (
                "mean_iou",
                "pixel_accuracy",
                "mean_class_accuracy",
            )


def test_a_replaced_teacher_classifier_retrains_the_students_of_its_logits(
    tiny_run, tmp_path, capsys
):
    """A replaced classifier.pt beside an unchanged encoder.pt retrains kd, not fitnet.

    The teacher.checkpoint folder's logits change, so kd (which reads them) trains again;
    fitnet (features only) is reused.
    """
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_run / "teacher" / "seed0", teacher)
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "data", run / "data")  # the generated scenes, not regenerated
    argv = _argv(
        run,
        "distill.students=[depth]",
        "distill.methods=[kd,fitnet]",
        "teacher.task=probe-labels",
        "probe.probes=[knn]",
        f"teacher.checkpoint={teacher}",
    )
    assert main(argv) == 0
    units = {m: run / "distill" / "seed0" / "depth" / m for m in ("kd", "fitnet")}
    keys = {m: json.loads((u / "done.json").read_text())["key"] for m, u in units.items()}
    weights = torch.load(units["kd"] / "encoder.pt", weights_only=True)["state_dict"]

    head = torch.load(teacher / "classifier.pt", weights_only=True)
    torch.save({name: -value for name, value in head.items()}, teacher / "classifier.pt")
    capsys.readouterr()
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "student depth fitnet seed 0: cached" in out
    assert "student depth kd seed 0: cached" not in out
    again = {m: json.loads((u / "done.json").read_text())["key"] for m, u in units.items()}
    assert again["fitnet"] == keys["fitnet"] and again["kd"] != keys["kd"]
    retrained = torch.load(units["kd"] / "encoder.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(weights[k], retrained[k]) for k in weights)
