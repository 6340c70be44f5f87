"""xmodal's own contract checks, run on every component this package declares."""

from __future__ import annotations

from xmodal.testing import check_component, parametrize_checks


@parametrize_checks(package="xmodal-imu")
def test_contract(kind: str, name: str, check: str) -> None:
    """Each check of each entry point passes, as it does for xmodal's built-ins."""
    check_component(kind, name, check)
