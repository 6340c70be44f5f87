"""A misspelt component name fails at load, with exit 2, one line naming the config key and a
suggestion, before any stage writes anything."""

from __future__ import annotations

import pytest

from xmodal.cli.main import main


@pytest.mark.parametrize("override, message", [
    ("data.name=scene", "data.name: unknown dataset 'scene': did you mean 'scenes'"),
    ("teacher.modality=rbg", "teacher.modality: unknown modality 'rbg': did you mean 'rgb'"),
    ("teacher.modality=hha", "teacher.modality: dataset 'scenes' has no modality 'hha'"),
    ("distill.students=[depth,audoi]", "distill.students[1]: unknown modality 'audoi': did you mean 'audio'"),
    ("teacher.encoder.name=resnet9", "teacher.encoder.name: unknown backbone 'resnet9': did you mean 'resnet8'"),
    ("distill.encoder.name=resnt8", "distill.encoder.name: unknown backbone 'resnt8': did you mean 'resnet8'"),
    ("distill.methods=[none,wcordd]", "distill.methods[1]: unknown"),
    ("probe.probes=[linaer]", "probe.probes[0]: unknown probe 'linaer': did you mean 'linear'"),
])
def test_a_misspelt_name_fails_before_any_stage(override, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "scenes", "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()  # no data generated, no teacher trained, not even config.yaml
