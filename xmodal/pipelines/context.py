"""What every stage is handed: the run's config, directory, accelerator, console and state.

A run directory holds one folder per cached unit of work (``teacher/seed0``,
``distill/seed0/depth/wcord``...), a :class:`~xmodal.core.cache.Unit` keyed by the fingerprint
of its inputs (config sections, the content digests of upstream units, the identity of each
component it runs): running again with the same config and code skips it, changing an input
recomputes it and everything after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from rich.console import Console

from xmodal.core.cache import Unit
from xmodal.core.identity import changed_components
from xmodal.pipelines.config import RunConfig
from xmodal.pipelines.state import StageState
from xmodal.training.distributed import main_process_decides


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
        """The cached unit ``run_dir/<parts...>`` keyed by ``inputs``.

        It reports through :meth:`say` (with the component whose code changed, when ``inputs``
        name them under ``components``: see :mod:`xmodal.core.identity`) and takes the main
        process's answers (:meth:`agree`).
        """
        return Unit(
            self.run_dir.joinpath(*parts),
            inputs,
            self.accelerator.is_main_process,
            self.say,
            self.agree,
            changed_components,
        )

    def agree(self, value: Any) -> Any:
        """``value`` as the main process computed it, on every process."""
        return main_process_decides(value, self.accelerator)

    def say(self, message: str) -> None:
        """Print on the main process only."""
        if self.accelerator.is_main_process:
            self.console.print(message)
