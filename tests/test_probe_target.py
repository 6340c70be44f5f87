"""``xmodal probe`` on exported encoders, run directories and backbones; ``xmodal report``."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_scenes import TINY_SCENES

import xmodal.pipelines.stages.probe as probe_stage
from xmodal.cli.main import main
from xmodal.encoders.export import export_encoder, load_encoder, read_export_metadata

TINY = [
    *TINY_SCENES,
    "distill.students=[depth]",
    "distill.methods=[none,wcord]",
]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "scenes", "--out", str(out), *_sets(TINY)]) == 0
    return out


def _rows(directory):
    return {
        (r["modality"], r["method"], r["probe"], r["metric"]): r["value"]
        for r in json.loads((directory / "results.json").read_text())
    }


def _counting_extractions(monkeypatch):
    calls = []
    real = probe_stage.extract_features

    def counted(encoder, dataset, **kwargs):
        calls.append(len(dataset))
        return real(encoder, dataset, **kwargs)

    monkeypatch.setattr(probe_stage, "extract_features", counted)
    return calls


def test_exported_student_reproduces_the_pipeline_probe_and_caches_on_weights(
    run, tmp_path, monkeypatch
):
    student = run / "distill" / "seed0" / "depth" / "wcord"
    out = tmp_path / "probe"
    calls = _counting_extractions(monkeypatch)
    assert main(["probe", str(student), "--probes", "linear,knn", "--out", str(out)]) == 0
    assert len(calls) == 3  # train, val, test: once each for both probes
    ours, pipeline = _rows(out), _rows(run)
    for key in [
        ("depth", "wcord", p, m)
        for p in ("linear", "knn")
        for m in ("accuracy", "mean_class_accuracy")
    ]:
        assert ours[key] == pipeline[key]  # same features, same fit: exactly equal
    first = set((out / "features").iterdir())

    calls.clear()
    assert (
        main(["probe", str(student / "encoder.json"), "--probes", "linear", "--out", str(out)]) == 0
    )
    assert calls == []  # same weights: features come from the cache

    encoder = load_encoder(student)
    with torch.no_grad():
        next(encoder.parameters()).mul_(-1.0)  # new weights, same architecture
    meta = read_export_metadata(student)
    changed = tmp_path / "changed"
    export_encoder(
        encoder,
        changed,
        meta["backbone"],
        meta["backbone_options"],
        meta["frontend_options"],
        extra=meta["extra"],
    )
    assert (
        main(
            [
                "probe",
                str(changed),
                "--probes",
                "linear",
                "--out",
                str(out),
                "--config",
                str(run / "config.yaml"),
            ]
        )
        == 0
    )
    assert len(calls) == 3  # new weights: extracted again, into a new cache file
    assert len(set((out / "features").iterdir()) - first) == 1


def test_probing_a_run_directory_matches_every_pipeline_row(run, tmp_path):
    out = tmp_path / "probe-run"
    assert main(["probe", str(run), "--out", str(out)]) == 0
    ours, pipeline = _rows(out), _rows(run)
    assert {k[2] for k in ours} == {"linear", "knn", "retrieval"}
    assert ours == pipeline  # teacher and students, all probes, retrieval included


def test_retrieval_without_a_teacher_is_refused(run, tmp_path, capsys):
    student = run / "distill" / "seed0" / "depth" / "none"
    assert main(["probe", str(student), "--probes", "retrieval", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compares students with their teacher" in err


def test_a_pretrained_backbone_is_probed(run, tmp_path):
    import torchvision

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    out = tmp_path / "probe-r18"
    assert (
        main(
            [
                "probe",
                "resnet18",
                "--modality",
                "rgb",
                "--pretrained",
                str(weights),
                "--probes",
                "knn",
                "--out",
                str(out),
                "--data",
                "scenes",
                *_sets(TINY),
            ]
        )
        == 0
    )
    rows = json.loads((out / "results.json").read_text())
    assert {(r["modality"], r["method"], r["probe"]) for r in rows} == {("rgb", "resnet18", "knn")}


def test_an_unknown_target_names_the_choices(tmp_path, capsys):
    assert main(["probe", "resnet9000", "--out", str(tmp_path)]) == 2
    assert (
        "not a path (exported encoder or run directory) nor a registered backbone"
        in capsys.readouterr().err
    )


def test_report_rebuilds_and_compares_runs(run, tmp_path, capsys):
    for png in (run / "report").glob("*.png"):
        png.unlink()
    (run / "report.md").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").is_file()
    assert {p.name for p in (run / "report").glob("*.png")} == {
        "probe-results.png",
        "training-curves.png",
        "embedding-spread.png",
        "embeddings-pca.png",
        "transport-plan.png",
    }

    other = tmp_path / "other"  # any finished run or probe output compares
    assert main(["probe", str(run), "--probes", "linear", "--out", str(other)]) == 0
    table = tmp_path / "comparison.md"
    assert main(["report", str(run), str(other), "--out", str(table)]) == 0
    lines = table.read_text().splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == ["probe", "metric", "modality", "method", run.name, other.name]
    cells = {tuple(c.strip() for c in line.strip("|").split("|")[:4]): line for line in lines[4:]}
    linear = [
        c.strip() for c in cells[("linear", "accuracy", "depth", "wcord")].strip("|").split("|")
    ]
    key = ("depth", "wcord", "linear", "accuracy")
    assert linear[4:] == [f"{100 * _rows(run)[key]:.1f}", f"{100 * _rows(other)[key]:.1f}"]
    knn = [c.strip() for c in cells[("knn", "accuracy", "depth", "wcord")].strip("|").split("|")]
    assert knn[5] == "-"  # the second run has no knn probe
    assert "runs side by side" in capsys.readouterr().out


#: a fresh CIFAR ResNet-8 probed with k-NN on a tiny scenes set
BACKBONE = ["probe", "resnet8", "--modality", "rgb", "--data", "scenes", "--probes", "knn"]


def test_probe_runs_under_runtime_threads_and_leaves_a_run_directory(tmp_path, monkeypatch):
    seen = []
    real = probe_stage.extract_features

    def counted(encoder, dataset, **kwargs):
        seen.append(torch.get_num_threads())
        return real(encoder, dataset, **kwargs)

    monkeypatch.setattr(probe_stage, "extract_features", counted)
    before = torch.get_num_threads()
    threads = before + 1
    out, again = tmp_path / "probe", tmp_path / "again"
    try:
        argv = [*BACKBONE, "--out", str(out), *_sets([*TINY[:4], f"runtime.threads={threads}"])]
        assert main(argv) == 0
        assert seen and set(seen) == {threads}  # every split embedded under runtime.threads
        assert torch.get_num_threads() == before  # and the caller's count is restored after
        # its exported backbone probed again, with no settings: the config.yaml of the run
        # directory holding it gives the same data and options, so the same rows
        seen.clear()
        target = out / "probe-targets" / "resnet8"
        assert main(["probe", str(target), "--probes", "knn", "--out", str(again)]) == 0
        assert len(seen) == 3 and set(seen) == {threads}
    finally:
        torch.set_num_threads(before)
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["runtime"]["threads"] == threads
    assert config["probe"]["probes"] == ["knn"]  # what ran, not the pipeline's default list
    assert config["data"]["scenes"]["num_train"] == 48
    assert _rows(again) == _rows(out)


def test_a_probe_launched_alone_in_its_job_stops_before_its_out_exists(
    tmp_path, monkeypatch, capsys
):
    """The launch guard of ``xmodal run`` holds for ``xmodal probe``.

    A process started as one of two that joins a job of one stops with one line, before it takes
    or writes anything.
    """
    from xmodal.training import distributed

    class Alone:
        num_processes = 1

        def __init__(self, **kwargs):
            pass

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(distributed, "Accelerator", Alone)
    target = tmp_path / "target"
    target.mkdir()
    assert main(["probe", str(target), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(
        "[rank 1] error: this process was started as rank 1 of a 2-process job, but it joined "
        "a job of 1"
    )
    assert not (tmp_path / "out").exists()
