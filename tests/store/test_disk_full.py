"""A disk that fills up mid-run: every step committed before is kept, the run says what happened.

The database lives on a 3 MB tmpfs mounted in a private mount namespace (``unshare -m``), so the
disk really fills: SQLite's own ``SQLITE_FULL``, not a simulation. Skipped where mounting is not
allowed.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from namespaces import can_mount

from tracer.store import open_store

PLUGIN = """
from dataclasses import dataclass, field
from tracer import hookimpl
from tracer.plugins.pipeline import Pipeline

@dataclass
class Config:
    steps: int = field(default=400, metadata={"help": "training steps"})

def data(config):
    import torch
    return torch.randn(64, 32)

def model(config):
    from torch import nn
    return nn.Sequential(*[nn.Linear(32, 32) for _ in range(60)])

def train(model, data, config, ctx):
    for _ in range(config.steps):
        loss = model(data).pow(2).mean()
        loss.backward()
        ctx.step({"loss": loss.item()})

@hookimpl
def register_pipelines(register):
    register(Pipeline("fill", "many layers, every step traced", Config, data, model, train))
"""


def test_disk_full_keeps_every_committed_step_and_fails_the_run(tmp_path: Path) -> None:
    if not can_mount(tmp_path):
        pytest.skip("cannot mount a small tmpfs here (needs a mount namespace)")
    (tmp_path / "fill_plugin.py").write_text(PLUGIN)
    mnt, saved = tmp_path / "mnt", tmp_path / "saved"
    mnt.mkdir()
    saved.mkdir()
    tracer = Path(sys.executable).with_name("tracer")
    script = (
        f"mount -t tmpfs -o size=3m tmpfs {mnt} && cd {tmp_path} && "
        f"{tracer} run fill --plugin fill_plugin.py --db {mnt}/t.db --every 1 --grads; "
        f"echo rc=$?; cp {mnt}/t.db* {saved}/"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert "rc=1" in done.stdout, done.stdout + done.stderr
    assert "database or disk is full" in done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is marked failed" in errors[0], done.stderr
    db = saved / "t.db"
    check = sqlite3.connect(db).execute("PRAGMA integrity_check").fetchall()
    assert check == [("ok",)]
    with open_store(db) as store:
        (run,) = store.list_runs()
        steps = store.steps(run.id)
        assert run.status == "failed" and "disk is full" in (run.error or "")
        assert 0 < len(steps) < 400 and steps == list(range(len(steps)))
        assert run.steps == len(steps)
        assert len(store.flow(run.id, steps[-1])) == 61  # the root and its 60 layers, whole
        assert len(store.metrics(run.id)) >= len(steps)
