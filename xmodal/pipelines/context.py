"""Run state shared by the stages, and cached, resumable units of work.

A run directory holds one folder per unit of work (``teacher/seed0``,
``distill/seed0/depth/wcord``...). A unit is finished when its ``done.json`` exists and
records the fingerprint of the unit's inputs (config sections, the content digests of upstream
units); running again with the same config skips it, changing an input recomputes it and
everything after. A record is reused only when ``done.json`` is well formed and every file it
vouches for still has the recorded content digest; paths in it are relative to the unit's
folder, so a copied or moved run directory reads its own files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from rich.console import Console

from xmodal.core.config import fingerprint
from xmodal.core.records import write_json_atomic
from xmodal.pipelines.config import RunConfig
from xmodal.training.checkpoint import file_digest


@dataclass
class Unit:
    """One cached unit of work in ``directory``, keyed by the fingerprint of ``inputs``."""

    directory: Path
    inputs: dict[str, Any]
    is_main: bool = True
    notice: Callable[[str], None] = lambda message: None

    @property
    def key(self) -> str:
        return fingerprint(self.inputs)

    @property
    def done_file(self) -> Path:
        return self.directory / "done.json"

    def record(self, files: Mapping[str, str] = {}) -> dict[str, Any] | None:
        """The finished unit's record, or None when it must (re)run.

        Args:
            files: ``{record key: file name}``: the record's value under that key is the content
                digest of that file in the unit's folder; a missing or changed file, like a
                malformed ``done.json``, means recompute (and ``notice`` says why).
        """
        if not self.done_file.is_file():
            return None
        try:
            done = json.loads(self.done_file.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._stale("its done.json is not valid JSON")  # e.g. a torn write
        if not isinstance(done, dict) or done.get("key") != self.key:
            return None if isinstance(done, dict) else self._stale("its done.json is malformed")
        record = done.get("record")
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in files):
            return self._stale("its done.json is malformed")
        for key, name in files.items():
            path = self.directory / name
            if not path.is_file():
                return self._stale(f"{name} is missing")
            if file_digest(path) != record[key]:
                return self._stale(f"{name} does not match the digest in done.json")
        return record

    def _stale(self, why: str) -> None:
        self.notice(f"{self.directory}: {why}; recomputing it")
        return None

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
                    self.say)

    def say(self, message: str) -> None:
        """Print on the main process only."""
        if self.accelerator.is_main_process:
            self.console.print(message)
