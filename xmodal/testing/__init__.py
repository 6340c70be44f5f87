"""The contract checks of every component kind, for xmodal's own tests and for plugins'.

A plugin's test suite runs the same checks as xmodal's built-ins (as scikit-learn's
``check_estimator`` does for estimators)::

    from xmodal.testing import check_component, parametrize_checks

    @parametrize_checks(package="xmodal-imu")  # every check of every entry point of the package
    def test_contract(kind, name, check):
        check_component(kind, name, check)

    check_component("frontends", "imu")  # or every check of one component; raises ContractError

``xmodal check PACKAGE_OR_NAME`` runs them from the command line. Importing this module needs
no pytest; the ``parametrize_*`` helpers import it when called. See ``docs/plugins.md``.
"""

from xmodal.testing.checks import CHECKS, Check, ContractError, Skipped, expect
from xmodal.testing.parametrize import parametrize_checks, parametrize_components
from xmodal.testing.run import (
    KINDS,
    CheckResult,
    check_component,
    components,
    installed_packages,
    normalise_kind,
    resolve,
    run_checks,
)

__all__ = [
    "CHECKS",
    "KINDS",
    "Check",
    "CheckResult",
    "ContractError",
    "Skipped",
    "check_component",
    "components",
    "expect",
    "installed_packages",
    "normalise_kind",
    "parametrize_checks",
    "parametrize_components",
    "resolve",
    "run_checks",
]
