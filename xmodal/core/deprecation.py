"""Former names of public objects, still importable for one release with a warning.

A module that renamed ``WCoRDConfig`` to ``WCoRDOptions`` serves the old name through
:func:`former_names` as its module ``__getattr__`` (PEP 562): the old name gives the new object
and one :class:`~xmodal.core.errors.DeprecatedSpelling` warning naming the new spelling.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from xmodal.core.errors import DeprecatedSpelling

__all__ = ["former_names"]


def former_names(
    module: str, renamed: Mapping[str, str], namespace: Mapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving each former name in ``renamed`` as its new object.

    Args:
        module: the module's ``__name__`` (named in messages).
        renamed: ``{former name: new name}``.
        namespace: the module's ``globals()``, where the new names live.

    Returns:
        ``__getattr__(name)``: the object now named ``renamed[name]``, with a
        :class:`~xmodal.core.errors.DeprecatedSpelling` warning; ``AttributeError`` for any
        other name.
    """

    def __getattr__(name: str) -> Any:
        new = renamed.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} is deprecated: use {module}.{new} (a component's options "
            f"dataclass is named *Options); {name} is served for one more release",
            DeprecatedSpelling,
            stacklevel=2,
        )
        return namespace[new]

    return __getattr__
