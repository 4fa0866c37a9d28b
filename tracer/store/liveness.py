"""Telling a run that is still running from one whose process died without finishing it."""

from __future__ import annotations

import os
from pathlib import Path

#: A run on another host counts as interrupted after this long without a write (seconds).
DEFAULT_STALE_AFTER_S = 15 * 60.0


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists here and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill()
    # a killed child not yet reaped by its parent is a zombie ("Z"): its run is over
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def effective_status(
    status: str,
    *,
    host: str | None,
    pid: int | None,
    updated_at: float | None,
    this_host: str,
    now: float,
    stale_after_s: float,
) -> str:
    """The status to report: a ``running`` run whose process is gone is ``interrupted``."""
    if status != "running":
        return status
    if host == this_host and pid is not None:
        return "running" if pid_alive(pid) else "interrupted"
    if updated_at is not None and now - updated_at > stale_after_s:
        return "interrupted"
    return "running"
