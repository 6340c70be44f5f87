"""CLI: user mistakes print one line and exit 2; list and version work."""

from __future__ import annotations

import subprocess
import sys

import pytest

import xmodal
from xmodal.cli.main import main
from xmodal.core.errors import XmodalError


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "scene"], "unknown pipeline 'scene': did you mean 'scenes'?"),
        (
            ["run", "scenes", "--set", "distill.optim.epohcs=3"],
            "did you mean 'distill.optim.epochs'",
        ),
        (["run", "scenes", "--set", "seeds"], "expected KEY=VALUE"),
        (["run", "scenes", "--set", "distill.optim.epochs=three"], "expected an integer"),
        (
            ["run", "scenes", "--config", "/nonexistent/x.yaml"],
            "config file '/nonexistent/x.yaml' does not exist",
        ),
        (["list", "widgets"], "invalid choice: 'widgets'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_mistakes_give_one_line_and_status_2(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] == "run" else argv) == 2
    assert fragment in _one_error_line(capsys)


def test_unknown_method_and_modality_fail_before_training(capsys, tmp_path):
    argv = [
        "run",
        "scenes",
        "--out",
        str(tmp_path),
        "--set",
        "data.scenes.num_train=8",
        "--set",
        "data.scenes.num_val=4",
        "--set",
        "data.scenes.num_test=4",
        "--set",
        "data.scenes.image_size=16",
        "--set",
        "teacher.optim.epochs=0",
    ]
    assert main([*argv, "--set", "distill.methods=[wcrod]"]) == 2
    assert "unknown method 'wcrod': did you mean 'wcord'" in _one_error_line(capsys)
    assert main([*argv, "--set", "distill.students=[lidar]"]) == 2
    assert "distill.students[0]: unknown modality 'lidar'" in _one_error_line(capsys)


def test_version_and_list(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"xmodal {xmodal.__version__}"
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "wcord" in out and "supervised" in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("methods", "backbones", "frontends", "datasets", "probes", "pipelines", "stages"):
        assert kind in out


#: modules that make a start slow; a quick command imports none of them
HEAVY = ("torch", "torchvision", "torchaudio", "accelerate", "numpy", "h5py", "open3d")
#: xmodal's layers above core and the CLI
LAYERS = ("data", "encoders", "objectives", "training", "evaluation", "pipelines")


def _imported_by(argv: list[str]) -> tuple[int, str, list[str]]:
    """Run ``xmodal ARGV`` in a fresh interpreter: (exit status, stdout, heavy modules imported)."""
    code = (
        "import sys\n"
        "from xmodal.cli.main import main\n"
        f"status = main({argv!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.partition('.')[0] in {HEAVY!r}\n"
        f"    or m.startswith('xmodal.') and m.split('.')[1] in {LAYERS!r})\n"
        "print('IMPORTED', status, ' '.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out, _, tail = proc.stdout.rpartition("IMPORTED ")
    status, _, modules = tail.strip().partition(" ")
    return int(status), out, modules.split()


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["list"]])
def test_quick_commands_import_no_torch_and_no_layer(argv):
    status, out, imported = _imported_by(argv)
    assert imported == [], imported
    if argv == ["list"]:
        assert status == 0 and "wcord" in out and "resnet8" in out and "scenes" in out


def test_list_of_one_kind_imports_only_what_describes_it():
    status, out, imported = _imported_by(["list", "pipelines"])
    assert status == 0 and "embedded tri-modal scenes" in out
    assert imported == ["xmodal.pipelines", "xmodal.pipelines.spec", "xmodal.pipelines.state"]


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "xmodal", "list", "pipelines"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "scenes" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "xmodal", "run", "nope"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_data_flag_for_a_generated_dataset_is_refused(capsys, tmp_path):
    assert main(["run", "scenes", "--out", str(tmp_path), "--data", "x.mat"]) == 2
    assert "dataset 'scenes' reads no file" in _one_error_line(capsys)


def test_data_prepare_then_info(tmp_path, capsys):
    sets = [
        "--set",
        "data.scenes.num_train=6",
        "--set",
        "data.scenes.num_val=3",
        "--set",
        "data.scenes.num_test=3",
        "--set",
        "data.scenes.image_size=12",
    ]
    assert main(["data", "prepare", "scenes", "--out", str(tmp_path), *sets]) == 0
    cache = tmp_path / "data" / "scenes" / "data.h5"
    assert cache.is_file() and not (tmp_path / "teacher").exists()  # preprocessing alone
    capsys.readouterr()
    assert main(["data", "info", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "6 train, 3 val, 3 test" in out and "storage" in out and "12 x 12 pixels" in out


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"hello", "is not an HDF5 file"),
        (b"MATLAB 5.0 MAT-file, Platform: x" + bytes(100), "is a MATLAB v5 file"),
    ],
)
def test_data_info_rejects_non_hdf5(tmp_path, capsys, content, fragment):
    path = tmp_path / "f.mat"
    path.write_bytes(content)
    assert main(["data", "info", str(path)]) == 2
    assert fragment in _one_error_line(capsys)


def test_data_info_lists_nyu_scene_types_with_counts(tmp_path, capsys):
    from nyu_fixtures import SCENE_TYPES, write_nyu_labeled

    path = tmp_path / "nyu_depth_v2_labeled.mat"
    write_nyu_labeled(path, frames=7, height=24, width=32)
    assert main(["data", "info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] in SCENE_TYPES:
            counts[cells[0]] = int(cells[1])
    planted = [SCENE_TYPES[i % len(SCENE_TYPES)] for i in range(7)]
    assert counts == {t: planted.count(t) for t in SCENE_TYPES}
    text = "\n".join(lines)
    assert "32 x 24 pixels" in text and "7 frames, not the full labeled set's 1449" in text
    assert "{" not in text  # a table, not a printed dict


def test_list_shows_whole_plain_descriptions_and_packages(capsys):
    from xmodal.core.registry import REGISTRIES

    for registry in REGISTRIES.values():
        for name in registry.names():
            text = registry.describe(name)
            assert text and "``" not in text and ":class:" not in text, (registry.kind, name, text)
            assert not text.endswith((";", ",", ":")), (registry.kind, name, text)
            assert registry.package(name) == "xmodal"
    assert REGISTRIES["frontends"].describe("hha").endswith("scaled to about [-2, 2].")
    assert main(["list", "frontends"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and out.count("xmodal") >= len(REGISTRIES["frontends"].names())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["probe"],
        ["report"],
        ["data"],
        ["data", "info"],
        ["data", "prepare"],
        ["data", "download"],
        ["list"],
    ],
)
def test_every_help_shows_an_example(argv, capsys):
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"xmodal {' '.join(argv)}".strip() in out.split("examples:")[1]


@pytest.mark.parametrize(
    "width, dropped", [(120, []), (80, ["-:--:--"]), (60, ["-:--:--", "0:00:00"])]
)
def test_progress_bars_drop_columns_instead_of_cutting_numbers(width, dropped):
    from io import StringIO

    from rich.console import Console

    from xmodal.training.progress import make_progress

    console = Console(width=width, file=StringIO(), record=True)
    bar = make_progress(console)
    bar.add_task(
        "student depth wcord seed 0", total=2400, completed=270, info="epoch 12/20 loss 4.123"
    )
    console.print(bar.make_tasks_table(bar.tasks))
    text = console.export_text()
    assert "270/2400" in text and "epoch 12/20 loss 4.123" in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for cell in ("-:--:--", "0:00:00"):
        assert (cell in text) == (cell not in dropped)


def test_data_info_describes_a_cifar100_cache_through_its_dataset(tmp_path, capsys):
    from test_pipeline_cifar100 import _write_cifar

    from xmodal.data.cifar100_source import CIFAR100Options, CIFAR100Source

    root = _write_cifar(tmp_path / "cifar", n_train=30, n_test=12, classes=4)
    options = CIFAR100Options(path=str(root), download=False, verify_md5=False)
    cache = CIFAR100Source().prepare(options, tmp_path / "cache.h5")
    assert main(["data", "info", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "cifar100 dataset cache" in out and "30 train, 12 test" in out
    assert "32 x 32 x 3 uint8" in out and "100 classes" in out


@pytest.fixture
def restore_datasets():
    """Registers made in a test are undone after it."""
    from xmodal.core.registry import DATASETS

    saved = {k: dict(v) for k, v in vars(DATASETS).items() if isinstance(v, dict)}
    yield DATASETS
    for key, value in saved.items():
        setattr(DATASETS, key, value)


def test_data_info_asks_a_dataset_registered_in_code_with_its_options(
    restore_datasets, tmp_path, capsys
):
    """A newcomer's dataset describes its own files; ``--set data.KEY.X`` reaches its options."""
    from dataclasses import dataclass

    @dataclass
    class NotesOptions:
        path: str = ""
        upper: bool = False

    class NotesSource:
        """Text notes, one sample per line."""

        name = "notes-test"
        modalities = ("rgb",)  # the dataset contract: registered front ends
        options = NotesOptions

        def prepare(self, options, cache_path, progress=None):
            raise NotImplementedError  # only its description is used here

        def load(self, cache_path):
            raise NotImplementedError

        def describe_file(self, path, options, progress=None):
            if path.suffix != ".notes":
                return None
            lines = path.read_text().splitlines()
            if progress is not None:
                progress(len(lines), len(lines), description="count notes")
            first = lines[0].upper() if options.upper else lines[0]
            assert options.path == str(path)  # its path option is the file
            return [("notes", ["", ""], [["lines", str(len(lines))], ["first", first]])]

    restore_datasets.add("notes-test", NotesSource)
    notes = tmp_path / "a.notes"
    notes.write_text("hello\nworld\n")
    assert main(["data", "info", str(notes), "--set", "data.notes_test.upper=true"]) == 0
    out = capsys.readouterr().out
    assert "lines" in out and "2" in out and "HELLO" in out
    assert main(["data", "info", str(notes), "--set", "data.paired.ignore_columns=[x]"]) == 2
    line = _one_error_line(capsys)
    assert "is a file of dataset 'notes-test'; data info takes data.notes_test.KEY=VALUE" in line
    assert main(["data", "info", str(notes), "--set", "data.notes_test.uper=true"]) == 2
    assert "unknown config key 'uper'; did you mean 'upper'?" in _one_error_line(capsys)


def test_data_prepare_takes_any_dataset_a_pipeline_selects():
    from xmodal.cli.data_commands import preparation

    assert preparation("nyu-depth") == ("nyu-depth", ["preprocess"], [])
    assert preparation("cifar100") == ("cifar100", ["preprocess"], [])
    assert preparation("scenes") == ("scenes", ["preprocess"], [])
    with pytest.raises(XmodalError, match="unknown dataset 'scene': did you mean 'scenes'"):
        preparation("scene")


def test_a_deprecation_is_one_warning_line(monkeypatch, capsys):
    import warnings

    import xmodal.cli.main as cli
    from xmodal.core.errors import DeprecatedSpelling

    def old_spelling(kind, console, err):
        message = "entry-point group 'xmodal.losses' is an old name"
        warnings.warn(message, DeprecatedSpelling, stacklevel=2)
        return 0

    monkeypatch.setattr(cli, "_list", old_spelling)
    assert main(["list"]) == 0
    assert capsys.readouterr().err == "warning: entry-point group 'xmodal.losses' is an old name\n"
