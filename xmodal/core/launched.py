"""Whether this process is one of a launched job: read from the launcher's environment.

Kept free of torch so that the command line can ask before it imports the training layer.
"""

from __future__ import annotations

import os

__all__ = ["launched_world_size"]


def launched_world_size() -> int:
    """Processes in the job the launcher started this one in (1 when not launched)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1
