"""Find the project's data folders (``pipelines/``, ``configs/``, ``datasets/``).

In a source checkout they sit beside the ``xmodal`` package; in an installed wheel the build
copies them into ``xmodal/_resources/`` (see ``[tool.hatch.build.targets.wheel.force-include]``
in pyproject.toml). Looking in both places lets the same code run from either.
"""

from __future__ import annotations

from pathlib import Path

from xmodal.core.errors import XmodalError

RESOURCE_KINDS = ("pipelines", "configs", "datasets")
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def resource_root(kind: str) -> Path:
    """The folder holding ``kind`` (one of :data:`RESOURCE_KINDS`)."""
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {RESOURCE_KINDS}")
    for candidate in (_PACKAGE_DIR / "_resources" / kind, _PACKAGE_DIR.parent / kind):
        if candidate.is_dir():
            return candidate
    raise XmodalError(
        f"xmodal's '{kind}' folder is missing (looked in {_PACKAGE_DIR / '_resources'} and "
        f"{_PACKAGE_DIR.parent}); reinstall xmodal"
    )


def resource_path(kind: str, relative: str) -> Path:
    """Path of a shipped file, e.g. ``resource_path("configs", "scenes.yaml")``."""
    path = resource_root(kind) / relative
    if not path.exists():
        raise XmodalError(
            f"xmodal resource '{kind}/{relative}' not found under {resource_root(kind)}"
        )
    return path
