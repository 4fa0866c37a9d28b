"""A separate process for store tests: ``python store_worker.py MODE URL ...``.

Modes: ``write URL NAME RUNS STEPS`` records RUNS runs of STEPS steps each; ``forever URL NAME``
writes steps until killed, printing each step once it is durable; ``read URL SECONDS`` reads
runs and flows in a loop; ``open URL START`` opens the store at the POSIX time START.
Each prints ``ok`` at the end, or the error on stderr with a non-zero exit status.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from store_records import sample_flow, sample_modules

from tracer.store import open_store


def write(url: str, name: str, runs: int, steps: int) -> None:
    """Record complete runs."""
    with open_store(url) as store:
        for _ in range(runs):
            run = store.create_run(name=name)
            writer = store.writer(run.id)
            writer.begin(sample_modules(), [])
            for step in range(steps):
                writer.write_step(step, sample_flow(step))
                writer.write_metrics(step, {"loss": 1.0})
            writer.end("completed")


def forever(url: str, name: str) -> None:
    """Write steps until killed; each printed step is committed."""
    store = open_store(url)
    run = store.create_run(name=name)
    writer = store.writer(run.id)
    writer.begin(sample_modules(), [])
    step = 0
    while True:
        writer.write_step(step, sample_flow(step, scale=1.0 + step))
        print(step, flush=True)
        step += 1


def read(url: str, seconds: float) -> None:
    """Read runs and their flows while others write."""
    deadline = time.time() + seconds
    with open_store(url) as store:
        while time.time() < deadline:
            for run in store.list_runs(limit=3):
                for step in store.steps(run.id)[-2:]:
                    store.flow(run.id, step)
                store.series(run.id, "lstm")


def open_at(url: str, start: float) -> None:
    """Open (and so create) the store at a given moment, racing other processes."""
    time.sleep(max(0.0, start - time.time()))
    open_store(url).close()


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    if mode == "write":
        write(url, rest[0], int(rest[1]), int(rest[2]))
    elif mode == "forever":
        forever(url, rest[0])
    elif mode == "read":
        read(url, float(rest[0]))
    else:
        open_at(url, float(rest[0]))
    print("ok")
