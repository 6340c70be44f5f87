"""The one exception type for mistakes a user can fix.

The CLI prints an :class:`XmodalError` as a single line and exits with status 2; every other
exception is a bug and keeps its traceback. Messages say what was wrong, where (file, key,
sample index) and what to do about it.
"""

from __future__ import annotations


class XmodalError(Exception):
    """A user-fixable error: bad config, unknown name, missing or corrupt file."""


class ConfigError(XmodalError):
    """A config file or ``--set`` override that does not fit the schema."""


class DataError(XmodalError):
    """A data file that is missing, corrupt or not in the expected layout."""


class OutputError(XmodalError):
    """An output that cannot be written: disk full, read-only, or a file where a folder must be."""


class DeprecatedSpelling(FutureWarning):
    """An old spelling (a config key, an entry-point group) that works for one more release.

    The message names the new spelling. A ``FutureWarning``, so that users see it by default;
    the CLI prints it as one ``warning:`` line.
    """
