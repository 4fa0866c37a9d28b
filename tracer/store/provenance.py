"""What a run records about where it came from: versions, host, pid, git commit, command line."""

from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
from typing import Any

import tracer
from tracer.store.limits import clip_text
from tracer.store.schema import COMMAND_CHARS


def git_commit(cwd: str | None = None) -> str | None:
    """The commit checked out in ``cwd`` (the working directory), or None outside a repository."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def command_line() -> str:
    """The current process's command line, shell-quoted."""
    return " ".join(shlex.quote(arg) for arg in sys.argv)


def host_name() -> str:
    """This machine's host name (used to decide whether a run's pid can be checked here)."""
    return socket.gethostname()


def current() -> dict[str, Any]:
    """Provenance of the calling process, as ``runs`` column values."""
    return {
        "python_version": platform.python_version(),
        "tracer_version": tracer.__version__,
        "host": host_name(),
        "pid": os.getpid(),
        "git_commit": git_commit(),
        # recorded, never refused: a command line past the column's cap is cut (shown with …)
        "command": clip_text(command_line(), COMMAND_CHARS),
    }
