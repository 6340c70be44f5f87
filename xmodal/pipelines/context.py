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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from rich.console import Console

from xmodal.core.config import fingerprint
from xmodal.core.records import write_json_atomic
from xmodal.pipelines.config import RunConfig
from xmodal.pipelines.state import StageState
from xmodal.training.checkpoint import file_digest
from xmodal.training.distributed import main_process_decides


@dataclass
class Unit:
    """One cached unit of work in ``directory``, keyed by the fingerprint of ``inputs``."""

    directory: Path
    inputs: dict[str, Any]
    is_main: bool = True
    notice: Callable[[str], None] = lambda message: None
    #: makes every process take the main process's answer (see ``main_process_decides``)
    agree: Callable[[Any], Any] = lambda value: value

    @property
    def key(self) -> str:
        return fingerprint(self.inputs)

    @property
    def done_file(self) -> Path:
        return self.directory / "done.json"

    def record(self, files: Sequence[str] = ()) -> dict[str, Any] | None:
        """The finished unit's record, or None when it must (re)run; the main process's
        answer on every process.

        Every file the record vouches for (``record["files"]``: name -> content digest, see
        :meth:`finish`) must still have its digest, and ``files`` must be among them; a missing
        or changed file, like a malformed ``done.json``, means recompute (``notice`` says why).
        """
        return self.agree(self._read_record(files))

    def _read_record(self, files: Sequence[str]) -> dict[str, Any] | None:
        if not self.done_file.is_file():
            return None
        try:
            done = json.loads(self.done_file.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._stale("its done.json is not valid JSON")  # e.g. a torn write
        if not isinstance(done, dict):
            return self._stale("its done.json is malformed")
        if done.get("key") != self.key:
            return None  # inputs changed
        record = done.get("record")
        digests = record.get("files") if isinstance(record, dict) else None
        if (
            not isinstance(digests, dict)
            or not set(files) <= set(digests)
            or not all(isinstance(d, str) for d in digests.values())
        ):
            return self._stale("its done.json is malformed")
        for name, digest in digests.items():
            path = self.directory / name
            if not path.is_file():
                return self._stale(f"{name} is missing")
            if file_digest(path) != digest:
                return self._stale(f"{name} does not match the digest in done.json")
        return record

    def _stale(self, why: str) -> None:
        self.notice(f"{self.directory}: {why}; recomputing it")
        return None

    def finish(self, record: dict[str, Any], files: Sequence[str] = ()) -> dict[str, Any]:
        """Mark the unit done with ``record``, vouching for ``files`` (names in its folder) by
        their content digests (``record["files"]``).
        """
        record = {**record, "files": {name: file_digest(self.directory / name) for name in files}}
        if self.is_main:
            write_json_atomic(
                self.done_file, {"key": self.key, "inputs": self.inputs, "record": record}
            )
        return record


@dataclass
class RunContext:
    """Everything a stage needs: config, run directory, accelerator, console, shared state."""

    config: RunConfig
    run_dir: Path
    accelerator: Accelerator
    console: Console
    state: StageState = field(default_factory=StageState)
    log: list[str] = field(default_factory=list)

    def unit(self, *parts: str, inputs: dict[str, Any]) -> Unit:
        return Unit(
            self.run_dir.joinpath(*parts),
            inputs,
            self.accelerator.is_main_process,
            self.say,
            self.agree,
        )

    def agree(self, value: Any) -> Any:
        """``value`` as the main process computed it, on every process."""
        return main_process_decides(value, self.accelerator)

    def say(self, message: str) -> None:
        """Print on the main process only."""
        if self.accelerator.is_main_process:
            self.console.print(message)
