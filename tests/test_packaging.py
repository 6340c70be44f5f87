"""Packaging and the docs: the README agrees with CI, and the wheel carries the data folders.

The README's commands match CI, its size and links hold, every docs page is reachable, and the
data folders ship inside the wheel and are found there.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the one command CI runs, also the README's test command
CI_COMMAND = "bash scripts/setup.sh --test && bash scripts/lint.sh && python3 -m pytest -q"


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of a markdown text."""
    assert f"\n## {heading}\n" in text, f"README has no '## {heading}' section"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _commands(section: str) -> list[str]:
    """The non-comment lines of the first bash code block of a section."""
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "section has no bash code block"
    return [
        line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")
    ]


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_quickstart_has_the_two_run_commands():
    commands = _commands(_section(_readme(), "Quickstart"))
    assert len(commands) == 2
    assert commands[0].startswith("bash scripts/setup.sh && ")
    assert "xmodal run scenes" in commands[0]
    assert "xmodal run paired --data" in commands[1]


def test_ci_runs_exactly_the_readmes_test_command():
    commands = _commands(_section(_readme(), "Development"))
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == [CI_COMMAND]
    assert ci == [CI_COMMAND]
    assert (ROOT / "scripts" / "lint.sh").is_file()


def test_readme_is_short_and_free_of_internal_provenance():
    text = _readme()
    assert len(text.splitlines()) <= 220
    for pattern in (r"\bissue[ -]?#?\d", r"\bitem \d", r"before the merge", r"\bsession"):
        assert not re.search(pattern, text, re.I), pattern


def _links(page: Path) -> list[str]:
    """Relative link targets of a markdown page (code blocks left out)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_every_docs_page_is_linked_from_the_readme_or_the_index():
    linked = set()
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        for target in _links(page):
            path = (page.parent / target.split("#")[0]).resolve()
            linked.add(path.relative_to(ROOT).as_posix())
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set()
    assert {"docs/index.md", "docs/add-a-modality.md", "docs/plugins.md"} <= {
        (ROOT / t.split("#")[0]).resolve().relative_to(ROOT).as_posix()
        for t in _links(ROOT / "README.md")
    }


def test_relative_links_in_the_readme_and_docs_resolve():
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")]
    broken = []
    for page in pages:
        for target in _links(page):
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_benchmarks_readme_lists_every_script_with_its_command():
    text = (ROOT / "benchmarks" / "README.md").read_text()
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([\w.]+)` \|.*\| `([^`]+)` \|$", text, re.M)
    }
    scripts = {p.name for p in (ROOT / "benchmarks").iterdir() if p.suffix in (".py", ".sh")}
    assert scripts - set(rows) == set()
    for name in scripts:
        assert f"benchmarks/{name}" in rows[name], name


def test_constraints_pin_the_tested_torch_set():
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert (pins["torch"], pins["torchvision"], pins["torchaudio"]) == ("2.9.1", "0.24.1", "2.9.1")


def test_wheel_carries_data_folders_and_finds_them(tmp_path):
    pytest.importorskip("hatchling")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("xmodal-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("pipelines", "configs", "datasets"):
        shipped = {
            p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file()
        }
        assert shipped, folder
        for rel in shipped:
            assert f"xmodal/_resources/{rel}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "from xmodal.core.registry import PIPELINES; "
        "from xmodal.core.resources import resource_root; s = PIPELINES.get('scenes'); "
        "print(resource_root('configs')); print(s.config_path())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(site / "xmodal" / "_resources" / "configs") in proc.stdout
