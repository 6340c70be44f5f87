"""Run state shared by the stages, and cached, resumable units of work.

A run directory holds one folder per unit of work (``teacher/seed0``,
``distill/seed0/depth/wcord``...). A unit is finished when its ``done.json`` exists and
records the fingerprint of the unit's inputs (config sections, upstream checkpoints); running
again with the same config skips it, changing an input recomputes it and everything after.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from rich.console import Console

from xmodal.core.config import fingerprint
from xmodal.core.records import write_json_atomic
from xmodal.pipelines.config import RunConfig
from xmodal.training.distributed import main_process_decides


@dataclass
class Unit:
    """One cached unit of work in ``directory``, keyed by the fingerprint of ``inputs``."""

    directory: Path
    inputs: dict[str, Any]
    is_main: bool = True
    #: makes every process take the main process's answer (see ``main_process_decides``)
    agree: Callable[[Any], Any] = lambda value: value

    @property
    def key(self) -> str:
        return fingerprint(self.inputs)

    @property
    def done_file(self) -> Path:
        return self.directory / "done.json"

    def record(self) -> dict[str, Any] | None:
        """The finished unit's record, or None when it must (re)run; the main process's
        answer on every process."""
        return self.agree(self._read_record())

    def _read_record(self) -> dict[str, Any] | None:
        if not self.done_file.is_file():
            return None
        try:
            done = json.loads(self.done_file.read_text())
        except json.JSONDecodeError:
            return None  # a torn write from a crash: recompute
        return done.get("record") if done.get("key") == self.key else None

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.is_main:
            write_json_atomic(self.done_file, {"key": self.key, "inputs": self.inputs,
                                               "record": record})
        return record


@dataclass
class RunContext:
    """Everything a stage needs: config, run directory, accelerator, console, shared state."""

    config: RunConfig
    run_dir: Path
    accelerator: Accelerator
    console: Console
    state: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def unit(self, *parts: str, inputs: dict[str, Any]) -> Unit:
        return Unit(self.run_dir.joinpath(*parts), inputs, self.accelerator.is_main_process,
                    agree=self.agree)

    def agree(self, value: Any) -> Any:
        """``value`` as the main process computed it, on every process."""
        return main_process_decides(value, self.accelerator)

    def say(self, message: str) -> None:
        """Print on the main process only."""
        if self.accelerator.is_main_process:
            self.console.print(message)
