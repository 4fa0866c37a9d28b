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


def still_written(
    status: str,
    *,
    host: str | None,
    pid: int | None,
    updated_at: float | None,
    this_host: str,
    now: float,
) -> str | None:
    """Why a run must not be deleted now (a process may still write it), or None.

    ``status`` is the stored one. A run of this host is written while its process lives; a
    ``running`` run of another host cannot be checked from here, however old its last write.
    """
    if status != "running":
        return None
    writer = f"pid {pid}" if pid is not None else "a process"
    if host == this_host and pid is not None:
        return f"is still being written by {writer} on host {host}" if pid_alive(pid) else None
    ago = "" if updated_at is None else f", last write {_age(now - updated_at)} ago"
    where = f"host {host}" if host else "an unknown host"
    return f"is marked running by {writer} on {where}, which cannot be checked from here{ago}"


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
