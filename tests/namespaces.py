"""Whether a test may mount file systems in a private mount namespace (``unshare -m``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def can_mount(tmp_path: Path) -> bool:
    """True when ``unshare -m`` can bind-mount and mount a tmpfs here (root, or user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "mount-probe"
    probe.mkdir(exist_ok=True)
    script = f"mount --bind {probe} {probe} && mount -t tmpfs -o size=1m tmpfs {probe}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True)
    return done.returncode == 0
