"""Running the real ``tracer`` command in a subprocess, without the user's tracer settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def tracer_env(cwd: Path) -> dict[str, str]:
    """This environment without ``TRACER_*`` settings, with a data cache inside ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TRACER_CACHE"] = str(cwd / "cache")
    return env


def tracer(*args: object, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tracer ARGS`` in ``cwd`` to the end; capture its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "tracer", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=tracer_env(cwd),
        timeout=timeout,
        check=False,
    )
