"""Pipeline specs: the YAML files under ``pipelines/`` that name a pipeline's stages and its config.

Each spec shipped there is registered in the ``pipelines`` registry when this module is imported
(xmodal's ``pyproject.toml`` declares their names, pointing here); packages add more through the
``xmodal.pipelines`` entry-point group (an entry is a :class:`PipelineSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.core.config import from_dict, read_yaml
from xmodal.core.errors import ConfigError
from xmodal.core.registry import PIPELINES, STAGES, UnknownNameError
from xmodal.core.resources import resource_path, resource_root
from xmodal.pipelines.state import check_stage_order


@dataclass
class PipelineSpec:
    """A pipeline: its stages and its default config.

    Attributes:
        name: what users type after ``xmodal run``.
        description: one line for ``xmodal list pipelines``.
        config: default config file, relative to ``configs/`` (or absolute).
        stages: registered stage names, run in order.
    """

    name: str
    description: str = ""
    config: str = ""
    stages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"pipeline '{self.name}' lists no stages")

    def config_path(self) -> Path | None:
        """The default config file, or None without one."""
        if not self.config:
            return None
        path = Path(self.config)
        return path if path.is_absolute() else resource_path("configs", self.config)

    def check_stages(self) -> None:
        """Every stage is registered and finds what it needs from the stages before it."""
        for stage in self.stages:
            try:
                STAGES.get(stage)
            except UnknownNameError as exc:
                raise ConfigError(f"pipeline '{self.name}': {exc}") from None
        try:
            check_stage_order(self.name, self.stages)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def pipeline_contract(name: str, entry: Any) -> None:
    """Check a pipeline entry: a :class:`PipelineSpec` named ``name`` whose stages are registered.

    Names only (nothing imported); whether the stages fit together is checked when it runs.
    """
    if not isinstance(entry, PipelineSpec):
        raise TypeError(
            f"pipeline '{name}' must be a xmodal.pipelines.spec.PipelineSpec, got {entry!r}"
        )
    if entry.name != name:
        raise ValueError(
            f"pipeline '{name}' is registered under another name than its spec's "
            f"'{entry.name}'; make them agree"
        )
    unknown = [s for s in entry.stages if s not in STAGES]
    if unknown:
        raise ValueError(
            f"pipeline '{name}' lists stages {unknown} that are not registered (see 'xmodal "
            "list stages'); register them or fix the names"
        )


def load_spec(path: Path) -> PipelineSpec:
    """The spec in the YAML file at ``path``; one ConfigError naming the file if it is wrong."""
    try:
        return from_dict(PipelineSpec, read_yaml(path), path="")
    except ConfigError as exc:
        raise ConfigError(f"pipeline spec '{path}': {exc}") from None


def shipped_specs() -> list[PipelineSpec]:
    """The specs shipped with xmodal (``pipelines/*.yaml``), by file name."""
    return [load_spec(path) for path in sorted(resource_root("pipelines").glob("*.yaml"))]


for _spec in shipped_specs():  # this module is the entry point of each shipped pipeline
    PIPELINES.add(_spec.name, _spec, _spec.description)
