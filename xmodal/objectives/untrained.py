"""``none``: the student as initialised, never trained: the floor every method is measured from."""

from __future__ import annotations

from typing import ClassVar

from xmodal.core.registry import METHODS
from xmodal.objectives.objective import Objective


@METHODS.register("none", "no training: the random-init student (probe floor)")
class Untrained(Objective):
    """No objective: the training stage keeps the initial weights."""

    needs: ClassVar[frozenset[str]] = frozenset()
    trains: ClassVar[bool] = False
