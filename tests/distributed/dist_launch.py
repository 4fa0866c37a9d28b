"""Helpers for the distributed tests: launching torchrun, the small sentiment config, shapes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tracer.records import CallRecord

ROOT = Path(__file__).parents[2]
#: A sentiment config that trains 3 steps per rank in well under a second.
SMALL = (
    "max_reviews=300",
    "seq_length=20",
    "embedding_dim=8",
    "hidden_dim=16",
    "batch_size=10",
    "epochs=1",
    "steps_per_epoch=3",
)


def env_for(tmp_path: Path) -> dict[str, str]:
    """The environment without tracer settings, an empty data cache, the project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "TORCHELASTIC_"))}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env["TRACER_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def torchrun_command(*args: str, nproc: int = 2) -> list[str]:
    """``torchrun --standalone --nproc_per_node=N ARGS`` through this interpreter."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *args,
    ]


def sentiment_args(db: str, sets: Sequence[str] = SMALL, *extra: str) -> list[str]:
    """``-m tracer run sentiment --db DB --set ...`` for torchrun."""
    pairs = [part for value in sets for part in ("--set", value)]
    return ["-m", "tracer", "run", "sentiment", "--db", db, "--every", "1", *pairs, *extra]


def torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """Run torchrun to the end and capture its output."""
    return subprocess.run(
        torchrun_command(*args, nproc=nproc),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env_for(cwd),
        timeout=180,
        check=False,
    )


def shape_flow(calls: Sequence[CallRecord]) -> list[tuple[object, ...]]:
    """What must match between ranks: each call and the shapes of its tensors."""
    return [
        (c.module, c.kind, c.op, c.call_index, tuple(t.shape for t in c.inputs + c.outputs))
        for c in calls
    ]


def output_means(calls: Sequence[CallRecord]) -> list[float]:
    """The mean of every call's first output (what differs between ranks' data shards)."""
    return [c.outputs[0].stats["mean"] for c in calls if c.outputs and "mean" in c.outputs[0].stats]
