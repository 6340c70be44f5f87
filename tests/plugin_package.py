"""A third-party package written by the tests, pip-installed into a folder put on ``PYTHONPATH``.

A module and a ``pyproject.toml`` declaring its entry points. It registers a component of four
kinds, each with an option: a ``thermal`` front end, a ``thermal-scenes`` dataset, a ``cosine``
method and a ``centroid`` probe. The worked example of a plugin package, with one component of
each kind, is ``examples/xmodal-imu`` (``tests/test_example_plugin.py``). :func:`write_dist`
writes a small installed package directly, and :func:`run_xmodal` runs the command beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PACKAGE = "xmodal_thermal_demo"
DISTRIBUTION = "xmodal-thermal-demo"

SOURCE = '''
"""Thermal images for xmodal: a front end, a dataset, a method and a probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from xmodal.data.scenes_source import ScenesSource
from xmodal.data.scenes import ScenesOptions
from xmodal.objectives.objective import Objective, ObjectiveContext


class ThermalFrontend(nn.Module):
    """Temperature [B, H, W] in kelvin -> [B, 1, H, W] standardised around room temperature."""

    out_channels = 1
    image_aligned = True

    def __init__(self, offset_k: float = 273.15, scale_k: float = 10.0) -> None:
        super().__init__()
        self.offset_k, self.scale_k = offset_k, scale_k

    def example_input(self, batch: int = 2) -> Tensor:
        return 293.0 + torch.randn(batch, 16, 16)

    def forward(self, kelvin: Tensor) -> Tensor:
        return ((kelvin.float() - self.offset_k - 20.0) / self.scale_k).unsqueeze(1)


@dataclass
class ThermalScenesOptions(ScenesOptions):
    """The scenes options plus the room's temperature."""

    ambient_c: float = 20.0


class ThermalScenes(ScenesSource):
    """The embedded scenes, with a thermal view: near surfaces warmer than far ones."""

    name = "thermal-scenes"
    modalities = ("rgb", "depth", "thermal")
    options = ThermalScenesOptions

    def prepare(self, options, cache_path, progress=None):
        self._ambient = options.ambient_c
        return super().prepare(options, cache_path, progress)

    def load(self, cache_path):
        loaded = super().load(cache_path)
        for split in loaded.splits.values():
            split.derive(
                "thermal", "depth", lambda depth, rows: 273.15 + 20.0 + 8.0 / (1.0 + depth.float())
            )
        return loaded


@dataclass
class CosineOptions:
    weight: float = 1.0


class CosineObjective(Objective):
    """1 - cosine between a linear map of the student's features and the teacher's."""

    options: ClassVar[type] = CosineOptions

    def __init__(self, student_dim: int, teacher_dim: int, weight: float) -> None:
        super().__init__()
        self.map = nn.Linear(student_dim, teacher_dim)
        self.weight = weight

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> "CosineObjective":
        torch.manual_seed(context.seed)
        return cls(context.student_dim, context.teacher_dim, options.weight)

    def forward(self, student, teacher, labels, indices):
        cosine = nn.functional.cosine_similarity(self.map(student), teacher.detach(), dim=1)
        return {"loss": self.weight * (1 - cosine).mean()}


@dataclass
class CentroidOptions:
    metric: Literal["cosine", "euclidean"] = "cosine"


class CentroidProbe:
    """Nearest class centroid of the train + val features."""

    options = CentroidOptions
    metrics = ("accuracy",)

    def __init__(self, config: CentroidOptions | None = None) -> None:
        self.config = config or CentroidOptions()

    def evaluate(self, train, val, test, num_classes):
        x = torch.cat([train[0], val[0]])
        y = torch.cat([train[1], val[1]])
        centroids = torch.stack([x[y == c].mean(0) for c in range(num_classes)])
        if self.config.metric == "cosine":
            score = (
                nn.functional.normalize(test[0], dim=1)
                @ nn.functional.normalize(centroids, dim=1).T
            )
        else:
            score = -torch.cdist(test[0], centroids)
        return {"accuracy": float((score.argmax(1) == test[1]).float().mean())}


class BrokenFrontend(nn.Module):
    """Forgets to say how many channels it makes."""

    image_aligned = True

    def example_input(self, batch: int = 2) -> Tensor:
        return torch.zeros(batch, 4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1)
'''

ENTRY_POINTS = {
    "xmodal.frontends": {"thermal": f"{PACKAGE}:ThermalFrontend"},
    "xmodal.datasets": {"thermal-scenes": f"{PACKAGE}:ThermalScenes"},
    "xmodal.methods": {"cosine": f"{PACKAGE}:CosineObjective"},
    "xmodal.probes": {"centroid": f"{PACKAGE}:CentroidProbe"},
}


def write_project(folder: Path, broken: bool = False) -> Path:
    """The package's source project: ``pyproject.toml`` with its entry points, and the module.

    ``broken`` also registers a front end that breaks the contract.
    """
    groups = {group: dict(entries) for group, entries in ENTRY_POINTS.items()}
    if broken:
        groups["xmodal.frontends"]["broken"] = f"{PACKAGE}:BrokenFrontend"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PACKAGE}.py").write_text(SOURCE)
    entry_points = "".join(
        f'[project.entry-points."{group}"]\n'
        + "".join(f'"{name}" = "{target}"\n' for name, target in entries.items())
        for group, entries in groups.items()
    )
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{DISTRIBUTION}"\nversion = "0.1"\n\n'
        f'[tool.setuptools]\npy-modules = ["{PACKAGE}"]\n\n' + entry_points
    )
    return folder


def install(site: Path, broken: bool = False) -> Path:
    """Build the package and pip-install it into ``site`` (a folder for ``PYTHONPATH``).

    As a user's ``pip install`` would: its entry points come from the installed metadata.
    """
    return pip_install(write_project(site.parent / f"{site.name}-src", broken), site)


def pip_install(project: Path, site: Path) -> Path:
    """``pip install --no-deps --target site project``; returns ``site``.

    ``project`` is a package folder with its ``pyproject.toml``, built in pip's isolated
    environment (setuptools from the configured index).
    """
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip could not install {project.name}: {proc.stderr[-2000:]}")
    return site


def write_dist(
    site: Path, distribution: str, modules: dict[str, str], groups: dict[str, dict[str, str]]
) -> Path:
    """An installed package in ``site``: its modules and a dist-info declaring ``groups``.

    What ``pip install`` leaves, written directly (no build, no index): ``modules`` is
    ``{module name: source}``, ``groups`` is ``{group: {name: "module:Attr"}}``.
    """
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    info = site / f"{distribution.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{n} = {v}\n" for n, v in entries.items()) + "\n"
            for group, entries in groups.items()
        )
    )
    return site


def run_xmodal(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m xmodal ARGS`` in a fresh process with ``site`` first on ``PYTHONPATH``."""
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", ""), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "xmodal", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "COLUMNS": "400"},
    )


#: ``python -c _MAIN_RUNNER JSON``: each command line of the JSON list through ``main``
_MAIN_RUNNER = """
import contextlib, io, json, sys
from xmodal.cli.main import main
answers = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    answers.append([code, err.getvalue()])
print(json.dumps(answers))
"""


def main_in_one_process(
    site: Path, argvs: list[list[str]], cwd: Path | None = None
) -> list[tuple[int, str]]:
    """``(exit code, stderr)`` of each command line, run through ``main`` in one fresh process.

    One torch import for many cases, with ``site`` first on ``PYTHONPATH``.
    """
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", ""), str(ROOT)])
    proc = subprocess.run(
        [sys.executable, "-c", _MAIN_RUNNER, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [(int(code), str(err)) for code, err in json.loads(proc.stdout.strip().splitlines()[-1])]
