"""Process helpers shared by the store (stale runs) and the local lineup (`local up` state)."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists (possibly another user's)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
