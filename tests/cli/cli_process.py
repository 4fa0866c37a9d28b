"""Running the real ``tracer`` command in a subprocess, without the user's tracer settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


def wait_for_steps(db: Path, n: int, timeout: float = 60.0) -> None:
    """Poll the store until its newest run has ``n`` traced steps."""
    from tracer.store import StoreError, open_store

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                store = open_store(db)
                try:
                    runs = store.list_runs()
                finally:
                    store.close()
            except StoreError:
                runs = []
            if runs and runs[0].steps >= n:
                return
        time.sleep(0.1)
    raise AssertionError(f"no run reached {n} steps in {timeout} s")


def stop_a_long_run(cwd: Path, signum: int, plugin: Path) -> tuple[int, str]:
    """Start a long ``tracer run tiny`` into ``cwd/t.db``, send ``signum`` once 3 steps are
    recorded; its exit status and stderr."""
    args = ["run", "tiny", "--plugin", plugin, "--every", "1", "--db", "t.db"]
    args += ["--set", "steps=100000", "--set", "delay=0.02"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tracer", *map(str, args)],
        cwd=cwd,
        env=tracer_env(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_steps(cwd / "t.db", 3)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr
