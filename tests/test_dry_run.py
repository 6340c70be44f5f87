"""The dry run at load: a crashing component fails in one line before preprocessing; cached."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from plugin_package import main_in_one_process, write_dist
from tiny_scenes import TINY_SCENES

from xmodal.cli.main import main
from xmodal.pipelines import dry_run as dry
from xmodal.pipelines.runner import RunResult, resolve_config

TINY = TINY_SCENES

#: a module registering, in code, one broken component of each kind the dry run runs
BROKEN = '''
from dataclasses import dataclass

import torch
from torch import nn

from xmodal.core.registry import BACKBONES, METHODS, PROBES
from xmodal.objectives.objective import Objective


class Crashy(nn.Module):
    """Builds fine, crashes on its first batch."""

    out_dim = 4
    stage_channels = [4]

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3)

    def forward_features(self, x):
        raise RuntimeError("boom on forward")


def crashy(in_channels: int = 3) -> Crashy:
    """A backbone that crashes on forward."""
    return Crashy(in_channels)


class NanLoss(Objective):
    """A method whose loss is NaN."""

    needs = frozenset({"teacher"})

    @classmethod
    def build(cls, context, options):
        return cls()

    def forward(self, student, teacher, labels, indices):
        return {"loss": student.sum() * float("nan")}


class Raiser:
    """A probe that raises."""

    metrics = ("accuracy",)

    def __init__(self, options=None) -> None:
        self.options = options

    def evaluate(self, train, val, test, num_classes):
        raise ValueError("probe exploded")


BACKBONES.add("crashy", crashy)
METHODS.add("nanloss", NanLoss)
PROBES.add("raiser", Raiser)
'''


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "dry_broken.py").write_text(textwrap.dedent(BROKEN))
    return folder


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (
            ["distill.encoder.name=crashy"],
            "dry run: backbone 'crashy' behind front end 'depth' (distill.encoder) from package "
            "'dry_broken' fails: RuntimeError: boom on forward; run `xmodal check "
            "backbones:crashy`",
        ),
        (
            ["distill.methods=[none,nanloss]"],
            "dry run: method 'nanloss' from package 'dry_broken' fails: AssertionError: the loss "
            "is nan; run `xmodal check methods:nanloss`",
        ),
        (
            ["probe.probes=[raiser]"],
            "dry run: probe 'raiser' from package 'dry_broken' fails: ValueError: probe "
            "exploded; run `xmodal check probes:raiser`",
        ),
    ],
)
def test_a_broken_component_fails_in_one_line_before_preprocess(
    broken, tmp_path, overrides, fragment
):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "xmodal", "run", "scenes", "--out", str(out)]
    for item in [*TINY, "plugins=[dry_broken]", *overrides]:
        argv += ["--set", item]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(broken), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert fragment in lines[0]
    assert not out.exists()  # no stage ran: preprocess wrote nothing, not even the run dir


#: one installed package declaring, by entry points, a front end with a ranged option and the
#: three broken components of :data:`BROKEN`
PACKAGE_SOURCE = (
    BROKEN.split("\nBACKBONES.add(")[0]
    + """

from xmodal.core.checks import positive, require


@dataclass
class GlowOptions:
    gain: float = 1.0

    def __post_init__(self) -> None:
        require(self, {"gain": positive()})


class Glow(nn.Module):
    \"\"\"Brightness [B, H, W] -> [B, 1, H, W], scaled by gain.\"\"\"

    out_channels = 1
    image_aligned = True
    options = GlowOptions

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = GlowOptions(gain).gain

    def example_input(self, batch: int = 2):
        return torch.rand(batch, 8, 8)

    def forward(self, x):
        return (x.float() * self.gain).unsqueeze(1)
"""
)
PACKAGE_CASES = [
    (
        ["frontends.glow.gain=-1"],
        "config key 'frontends.glow.gain': invalid gain=-1.0 (must be a finite number > 0)",
    ),
    (
        ["distill.encoder.name=crashy"],
        "dry run: backbone 'crashy' behind front end 'depth' (distill.encoder) from package "
        "'dry-broken-pkg' fails: RuntimeError: boom on forward; run `xmodal check "
        "backbones:crashy`",
    ),
    (
        ["distill.methods=[none,nanloss]"],
        "dry run: method 'nanloss' from package 'dry-broken-pkg' fails: AssertionError: the loss "
        "is nan; run `xmodal check methods:nanloss`",
    ),
    (
        ["probe.probes=[raiser]"],
        "dry run: probe 'raiser' from package 'dry-broken-pkg' fails: ValueError: probe "
        "exploded; run `xmodal check probes:raiser`",
    ),
]


def test_an_installed_package_of_broken_components_fails_each_in_one_line(tmp_path):
    """Issue 21's first Done-when item, from one package installed with entry points.

    A wrong front-end value, a backbone crashing on forward, a NaN loss and a raising probe:
    exit 2 and one line each, naming the package, before preprocess writes anything. Each passes
    its load contract; the config check or the dry run finds it.
    """
    site = write_dist(
        tmp_path / "site",
        "dry-broken-pkg",
        {"dry_broken_pkg": PACKAGE_SOURCE},
        {
            "xmodal.frontends": {"glow": "dry_broken_pkg:Glow"},
            "xmodal.backbones": {"crashy": "dry_broken_pkg:crashy"},
            "xmodal.methods": {"nanloss": "dry_broken_pkg:NanLoss"},
            "xmodal.probes": {"raiser": "dry_broken_pkg:Raiser"},
        },
    )
    outs = [tmp_path / f"run{i}" for i in range(len(PACKAGE_CASES))]
    argvs = [
        ["run", "scenes", "--out", str(out), *[a for s in [*TINY, *sets] for a in ("--set", s)]]
        for out, (sets, _) in zip(outs, PACKAGE_CASES, strict=True)
    ]
    answers = main_in_one_process(site, argvs, cwd=tmp_path)
    for (sets, message), out, (code, err) in zip(PACKAGE_CASES, outs, answers, strict=True):
        assert code == 2, (sets, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), (sets, err)
        assert not out.exists()  # preprocess wrote nothing, not even the run directory


def _counting(monkeypatch):
    """Count the dry run's checks by kind; the pipeline's stages are not run."""
    from xmodal.testing import checks

    counts = {"encoder": 0, "method": 0, "probe": 0}

    def wrap(name, fn):
        def counted(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return counted

    monkeypatch.setattr(checks, "encoder_step", wrap("encoder", checks.encoder_step))
    monkeypatch.setattr(checks, "objective_step", wrap("method", checks.objective_step))
    monkeypatch.setattr(checks, "probe_fits", wrap("probe", checks.probe_fits))
    monkeypatch.setattr(
        "xmodal.pipelines.runner.execute",
        lambda name, config, run_dir, *a, **k: RunResult(run_dir, [], []),
    )
    return counts


def test_the_default_config_passes_and_a_rerun_reuses_the_cache(monkeypatch, tmp_path):
    counts = _counting(monkeypatch)
    out = tmp_path / "run"
    assert main(["run", "scenes", "--out", str(out)]) == 0
    # rgb teacher, depth students; supervised and wcord train (none does not);
    # linear, knn and retrieval probes
    assert counts == {"encoder": 2, "method": 2, "probe": 3}
    cache = json.loads((out / dry.CACHE_FILE).read_text())
    assert cache["version"] == dry.CACHE_VERSION and len(cache["passed"]) == 7
    assert main(["run", "scenes", "--out", str(out)]) == 0
    assert counts == {"encoder": 2, "method": 2, "probe": 3}  # nothing ran again
    # a changed option reruns the check of the component that reads it, and only that one
    assert main(["run", "scenes", "--out", str(out), "--set", "probe.knn.k=3"]) == 0
    assert counts == {"encoder": 2, "method": 2, "probe": 4}
    assert main(["run", "scenes", "--out", str(out), "--set", "runtime.dry_run=false"]) == 0
    assert counts == {"encoder": 2, "method": 2, "probe": 4}


def test_the_key_holds_each_components_source(tmp_path, monkeypatch):
    _, config = resolve_config("scenes")
    before = {c.key for c in dry.plan(config, ["teacher", "distill", "probe"])}
    import xmodal.core.identity as identity

    monkeypatch.setattr(identity, "_IDENTITIES", {})  # forget the memoised identities
    monkeypatch.setattr(identity, "source_digest", lambda entry: "edited")  # every source changed
    after = {c.key for c in dry.plan(config, ["teacher", "distill", "probe"])}
    assert len(before) == len(after) == 7 and not before & after
    ident = dry.component_identity(dry.METHODS, "wcord")
    assert ident["package"] == "xmodal" and ident["source"] == "edited"


def test_the_dry_run_leaves_every_global_rng_alone():
    spec, config = resolve_config("scenes", overrides=TINY)
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    assert len(dry.dry_run(config, spec.stages, None)) == 7
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_a_run_gives_the_same_results_with_and_without_the_dry_run(tmp_path):
    small = [
        *TINY,
        "distill.students=[depth]",
        "distill.methods=[none,wcord]",
        "probe.probes=[linear]",
        "runtime.threads=1",
    ]
    results = []
    for flag in ("true", "false"):
        out = tmp_path / flag
        argv = ["run", "scenes", "--out", str(out)]
        for item in [*small, f"runtime.dry_run={flag}"]:
            argv += ["--set", item]
        assert main(argv) == 0
        assert (out / dry.CACHE_FILE).exists() == (flag == "true")
        results.append(json.loads((out / "results.json").read_text()))
        weights = out / "distill/seed0/depth/wcord/encoder.safetensors"
        results.append(weights.read_bytes())
    assert results[0] == results[2] and results[1] == results[3]
