"""pytest helpers: one test per component, or per check, of a package (pytest imported here only).

Modelled on scikit-learn's ``parametrize_with_checks``::

    from xmodal.testing import check_component, parametrize_checks

    @parametrize_checks(package="xmodal-imu")
    def test_contract(kind, name, check):
        check_component(kind, name, check)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from xmodal.testing.checks import CHECKS
from xmodal.testing.run import components

if TYPE_CHECKING:
    import pytest


def parametrize_components(
    package: str | None = None, kinds: Iterable[str] | None = None
) -> pytest.MarkDecorator:
    """A ``pytest.mark.parametrize`` over the components ``(kind, name)`` of ``package``.

    Args:
        package: an installed distribution (its entry points in xmodal's groups); None: every
            registered component, built-ins and installed plugins.
        kinds: only these kinds (default: all).

    Returns:
        The mark, with argument names ``kind, name`` and test ids ``kind:name``.
    """
    import pytest

    found = components(package, kinds)
    return pytest.mark.parametrize(("kind", "name"), found, ids=[f"{k}:{n}" for k, n in found])


def parametrize_checks(
    package: str | None = None, kinds: Iterable[str] | None = None
) -> pytest.MarkDecorator:
    """A ``pytest.mark.parametrize`` over every check of every component of ``package``.

    Args:
        package: as for :func:`parametrize_components`.
        kinds: only these kinds (default: all).

    Returns:
        The mark, with argument names ``kind, name, check`` and test ids ``kind:name:check``;
        pass them to :func:`~xmodal.testing.check_component`.
    """
    import pytest

    found = [(k, n, c.name) for k, n in components(package, kinds) for c in CHECKS[k]]
    return pytest.mark.parametrize(
        ("kind", "name", "check"), found, ids=[f"{k}:{n}:{c}" for k, n, c in found]
    )
