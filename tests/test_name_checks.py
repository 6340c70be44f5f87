"""A misspelt component name fails at load, before any stage writes anything.

It exits 2 with one line naming the config key and a suggestion.
"""

from __future__ import annotations

import pytest

from xmodal.cli.main import main


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.name=scene", "data.name: unknown dataset 'scene': did you mean 'scenes'"),
        ("teacher.modality=rbg", "teacher.modality: unknown modality 'rbg': did you mean 'rgb'"),
        ("teacher.modality=hha", "teacher.modality: dataset 'scenes' has no modality 'hha'"),
        (
            "distill.students=[depth,audoi]",
            "distill.students[1]: unknown modality 'audoi': did you mean 'audio'",
        ),
        (
            "teacher.encoder.name=resnet9",
            "teacher.encoder.name: unknown backbone 'resnet9': did you mean 'resnet8'",
        ),
        (
            "distill.encoder.name=resnt8",
            "distill.encoder.name: unknown backbone 'resnt8': did you mean 'resnet8'",
        ),
        ("distill.methods=[none,wcordd]", "distill.methods[1]: unknown"),
        ("probe.probes=[linaer]", "probe.probes[0]: unknown probe 'linaer': did you mean 'linear'"),
    ],
)
def test_a_misspelt_name_fails_before_any_stage(override, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "scenes", "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()  # no data generated, no teacher trained, not even config.yaml


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["distill.methods=[kd]", "teacher.optim.epochs=0"],
            "distill.methods[0]: method 'kd' needs the teacher's logits, "
            "but teacher.optim.epochs is 0",
        ),
        (
            ["distill.methods=[wcord]", "distill.wcord.beta=1", "teacher.checkpoint=NOWHERE"],
            "method 'wcord' needs the teacher's logits, "
            "but teacher.checkpoint 'NOWHERE' holds no classifier.pt",
        ),
        (
            [
                "distill.methods=[wcord]",
                "distill.wcord.beta=1",
                "distill.wcord.alpha=1",
                "teacher.optim.epochs=0",
            ],  # the transfer teacher of the scenes config, untrained
            "method 'wcord' needs the teacher's logits, but teacher.optim.epochs is 0",
        ),
        (
            ["data.name=cifar100", "distill.students=[rgb]", "distill.methods=[wcord]"],
            "teacher.task: dataset 'cifar100' has no teacher task of its own for 'transfer'",
        ),
        (
            ["distill.wcord.negatives=queue", "distill.wcord.sharing=anchor"],
            "sharing='anchor' (must be batch under negatives=queue",
        ),
    ],
)
def test_a_method_whose_needs_the_run_cannot_meet_fails_at_load(
    overrides, message, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["run", "scenes", "--out", str(out)]
    for item in overrides:
        argv += ["--set", item.replace("NOWHERE", str(tmp_path / "teacher"))]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.replace("NOWHERE", str(tmp_path / "teacher")) in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        ["distill.methods=[kd,wcord]", "distill.wcord.beta=1", "distill.wcord.alpha=1"],
        ["distill.methods=[kd]", "distill.kd.alpha=0.5", "teacher.task=probe-labels"],
    ],
)
def test_a_trained_teacher_has_logits_whatever_its_task(overrides):
    """The scenes transfer teacher has a classifier over its own classes.

    Hence kd and wcord.beta (with alpha) are accepted at load, as under probe-labels.
    """
    from xmodal.pipelines.runner import resolve_config

    _, config = resolve_config("scenes", None, overrides)
    assert config.distill.methods[0] == "kd"


def test_needs_follow_the_options():
    from xmodal.core.registry import METHODS
    from xmodal.objectives.baselines.kd import KDOptions
    from xmodal.objectives.wcord import WCoRDOptions

    kd, wcord, local = METHODS.get("kd"), METHODS.get("wcord"), METHODS.get("wcord-local")
    assert kd.needs_for(KDOptions()) == {"teacher_logits"}
    assert kd.needs_for(KDOptions(alpha=1.0)) == {"teacher_logits", "labels"}
    assert wcord.needs_for(WCoRDOptions()) == {"teacher"}
    assert wcord.needs_for(WCoRDOptions(negatives="other_class")) == {"teacher", "labels"}
    assert local.needs_for(WCoRDOptions(negatives="other_class")) == {
        "teacher"
    }  # no negatives drawn
    assert wcord.needs_for(WCoRDOptions(beta=0.5)) == {"teacher", "teacher_logits"}


@pytest.mark.parametrize(
    "stages, message",
    [
        (
            ["teacher", "distill", "probe", "report"],
            "stage 'teacher' needs data_key, dataset, dataset_source, which no stage before it "
            "produces; put 'preprocess' before it",
        ),
        (
            ["preprocess", "probe", "report"],
            "stage 'probe' needs models, which no stage before it produces; "
            "put 'distill' or 'teacher' before it",
        ),
        (["preprocess", "distill", "reprot"], "unknown stage 'reprot': did you mean 'report'"),
    ],
)
def test_a_pipeline_whose_stages_do_not_fit_is_refused_at_load(stages, message, tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: bad\nconfig: scenes.yaml\nstages: [{', '.join(stages)}]\n")
    from xmodal.core.errors import ConfigError
    from xmodal.pipelines.spec import load_spec

    with pytest.raises(ConfigError) as info:
        load_spec(spec).check_stages()
    assert message in str(info.value)


@pytest.mark.parametrize(
    "overrides, ways_out",
    [
        ([], "use a feature-based method (crd, fitnet, infonce, pkt, rkd, wcord, wcord-global, "),
        (["distill.wcord.beta=0.5"], "use a feature-based method (crd, fitnet, infonce, pkt, rkd)"),
    ],
)
def test_a_refusal_lists_the_methods_that_fit_with_the_runs_options(
    overrides, ways_out, tmp_path, capsys
):
    """The way out is asked of the registered methods (their needs under the run's options)."""
    argv = ["run", "scenes", "--out", str(tmp_path / "run")]
    for item in ["distill.methods=[kd]", "teacher.optim.epochs=0", *overrides]:
        argv += ["--set", item]
    assert main(argv) == 2
    assert ways_out in capsys.readouterr().err


@pytest.fixture
def forget_test_entries():
    """Remove the pipelines and stages a test registers, so later tests see the real lists."""
    from xmodal.core.registry import PIPELINES, STAGES

    before = {registry: set(registry._entries) for registry in (PIPELINES, STAGES)}
    yield
    for registry, names in before.items():
        for name in set(registry._entries) - names:
            for table in (registry._entries, registry._descriptions, registry._packages):
                table.pop(name, None)
            registry._options.pop(name, None)


def test_a_pipeline_without_a_teacher_stage_refuses_a_method_that_needs_one(
    tmp_path, forget_test_entries
):
    """The checks ask the stages which config sections they act on, not for stage names."""
    from xmodal.core.errors import ConfigError
    from xmodal.core.registry import PIPELINES
    from xmodal.pipelines.runner import resolve_config
    from xmodal.pipelines.spec import PipelineSpec

    name = "no-teacher-test"
    if name not in PIPELINES:
        spec = PipelineSpec(name, config="scenes.yaml", stages=["preprocess", "distill"])
        PIPELINES.add(name, spec)
    with pytest.raises(ConfigError, match=f"needs a teacher, but pipeline '{name}' has none"):
        resolve_config(name, None, ["distill.methods=[fitnet]"])
    _, config = resolve_config(name, None, ["distill.methods=[none]"])  # trains no student
    assert config.distill.methods == ["none"]
    # a stage of another name that acts on the teacher section gives the run its teacher
    from xmodal.core.registry import STAGES
    from xmodal.pipelines.state import stage

    if "own-teacher-test" not in STAGES:
        needs, produces = ("dataset", "dataset_source", "data_key"), ("teachers", "models")
        stage("own-teacher-test", "a teacher", needs=needs, produces=produces, config=["teacher"])(
            lambda ctx: None
        )
    name = "own-teacher-test"
    if name not in PIPELINES:
        stages = ["preprocess", "own-teacher-test", "distill"]
        PIPELINES.add(name, PipelineSpec(name, config="scenes.yaml", stages=stages))
    _, config = resolve_config(name, None, ["distill.methods=[fitnet]"])
    assert config.distill.methods == ["fitnet"]


def test_names_are_refused_before_torch_or_any_layer_is_imported(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from xmodal.core.errors import ConfigError\n"
        "from xmodal.pipelines.name_checks import check_names_early\n"
        "check_names_early('scenes', None, ['distill.methods=[none]', 'probe.probes=linear'])\n"
        "try:\n"
        "    check_names_early('scenes', None, ['distill.methods=[none,wcrod]'])\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "layers = ('data', 'encoders', 'objectives', 'training', 'evaluation')\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in ('torch', 'numpy')"
        " or m.startswith('xmodal.') and m.split('.')[1] in layers))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    message, imported = proc.stdout.strip().splitlines()
    assert message.startswith("distill.methods[1]: unknown method 'wcrod': did you mean 'wcord'")
    assert imported == "[]"
