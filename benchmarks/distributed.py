"""Distributed benchmark: concurrent writers into SQLite and PostgreSQL, and a traced DDP step.

Run from the repository root: ``python benchmarks/distributed.py [--pg URL]``. One command:

* tensor records per second written by 1, 2 and 4 writer processes at once (each its own run,
  one transaction per step of CALLS x 3 tensor records, as ranks of a job write), into one
  SQLite file and into one PostgreSQL database; the aggregate rate over the slowest writer's
  time, and the mean time of one step's transaction;
* the time of one 2-rank DDP training step of the article's SentimentLSTM under ``torchrun``
  (gloo), traced into the store (every step, ops on) against untraced, in alternating blocks.

Without ``--pg`` a throw-away PostgreSQL server is started the way the test suite does it
(Debian's ``initdb`` / ``pg_ctl``, a free port on 127.0.0.1) and removed at the end;
``--no-pg`` skips PostgreSQL. Machine load moves these numbers: compare them within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tracer.store import open_store  # noqa: E402


def write_worker(url: str, name: str, steps: int, calls: int, start_at: float) -> None:
    """One writer process: wait for the common start, write STEPS steps, print its timings."""
    from store import make_step  # benchmarks/store.py: CALLS Linear calls, 3 tensors each

    flows = [make_step(step, calls) for step in range(steps)]
    with open_store(url) as store:
        writer = store.writer(store.create_run(name=name).id)
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.time()
        for step, flow in enumerate(flows):
            writer.write_step(step, flow)
        ended = time.time()
    print(json.dumps({"began": began, "ended": ended}))


def writers_rate(url: str, writers: int, steps: int, calls: int) -> tuple[float, float]:
    """(aggregate tensor records per second, mean ms per step transaction) for N writers."""
    open_store(url).close()  # the schema exists before the clock starts
    start_at = time.time() + 3.0 + writers  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "write",
                url,
                f"w{i}",
                str(steps),
                str(calls),
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    times = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"a writer failed (exit {proc.returncode})")
        times.append(json.loads(out.strip().splitlines()[-1]))
    if max(t["began"] for t in times) > start_at + 0.2:
        print(f"  (a writer started late: the machine is busy; {writers} writers)")
    wall = max(t["ended"] for t in times) - min(t["began"] for t in times)
    per_step = statistics.mean((t["ended"] - t["began"]) / steps for t in times)
    return writers * steps * calls * 3 / wall, per_step * 1000


class _DdpStep:
    """The article's SentimentLSTM in DDP on this rank's batch, Adam and clipping as in training."""

    def __init__(self, hidden: int) -> None:
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        from tracer.plugins.builtin.sentiment.model import SentimentLSTM

        torch.manual_seed(0)
        self.model = SentimentLSTM(5000, hidden_dim=hidden)
        self.ddp = DistributedDataParallel(self.model)
        self.optimizer = torch.optim.Adam(self.ddp.parameters(), lr=1e-3)
        data = torch.Generator().manual_seed(dist.get_rank())
        self.inputs = torch.randint(1, 5000, (50, 200), generator=data)
        self.labels = torch.randint(0, 2, (50,), generator=data).float()

    def __call__(self) -> float:
        """One training step; returns its seconds."""
        from torch import nn

        began = time.perf_counter()
        loss = nn.functional.binary_cross_entropy(self.ddp(self.inputs), self.labels)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.ddp.parameters(), 5.0)
        self.optimizer.step()
        return time.perf_counter() - began


def step_worker(url: str, steps: int, rounds: int, hidden: int) -> None:
    """Under torchrun: alternate untraced and traced blocks of DDP steps; rank 0 prints."""
    import torch.distributed as dist

    import tracer
    from tracer.distributed import main_first

    dist.init_process_group("gloo")
    step = _DdpStep(hidden)
    store = main_first(lambda: open_store(url))
    plain: list[float] = []
    traced: list[float] = []
    step()  # warm-up
    for _ in range(rounds):
        plain += [step() for _ in range(steps)]
        with tracer.trace(step.model, store=store, name="bench-ddp", ops=True) as t:
            for _ in range(steps):
                took = step()
                began = time.perf_counter()
                t.step()  # the step's records go to the store here: part of the cost
                traced.append(took + time.perf_counter() - began)
    if dist.get_rank() == 0:
        print(json.dumps({"plain": plain, "traced": traced}))
    del step  # the clean exit: DDP and optimiser released, engine disposed, barrier, destroy
    store.close()
    dist.barrier()
    dist.destroy_process_group()


def ddp_step_times(url: str, steps: int, rounds: int, hidden: int) -> dict[str, Any]:
    """Launch the 2-rank step benchmark under torchrun and read rank 0's timings."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*launch, __file__, "step", url, str(steps), str(rounds), str(hidden)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"torchrun failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def postgres(args: argparse.Namespace) -> tuple[str | None, Any]:
    """The PostgreSQL URL to use, and the temporary server to stop afterwards (if started)."""
    if args.no_pg:
        return None, None
    if args.pg:
        return args.pg, None
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import PostgresServer  # the test suite's throw-away server

    server = PostgresServer()
    server.start()
    server.admin("CREATE DATABASE bench")
    return server.url("bench"), server


def report_writers(backends: dict[str, Any], args: argparse.Namespace) -> None:
    """Print each backend's writer rates for 1, 2 and 4 writers: medians of alternating rounds
    (this machine's speed drifts from one second to the next)."""
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for round_ in range(args.rounds):
        for label, make_url in backends.items():
            for writers in (1, 2, 4):
                url = make_url(writers, round_)
                measured = writers_rate(url, writers, args.steps, args.calls)
                results.setdefault((label, writers), []).append(measured)
    for (label, writers), measured in results.items():
        rate = statistics.median(r for r, _ in measured)
        per_step = statistics.median(ms for _, ms in measured)
        print(f"{label:10} {writers} writer(s): {rate:>10,.0f} tensor records/s   "
              f"{per_step:6.1f} ms per step transaction")  # fmt: skip


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL database to use (it is written)")
    parser.add_argument("--no-pg", action="store_true", help="Skip PostgreSQL.")
    parser.add_argument("--steps", type=int, default=200, help="steps per writer")
    parser.add_argument("--calls", type=int, default=50, help="calls per step (3 tensors each)")
    parser.add_argument("--rounds", type=int, default=3, help="writer rounds (medians)")
    parser.add_argument("--ddp-steps", type=int, default=3, help="steps per timed block")
    parser.add_argument(
        "--ddp-rounds", type=int, default=3, help="untraced/traced block pairs (0: skip)"
    )
    parser.add_argument("--hidden-dim", type=int, default=512, help="LSTM size of the DDP step")
    args = parser.parse_args()
    pg_url, server = postgres(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{args.steps} steps per writer, {args.calls * 3} tensor records per step")
            backends: dict[str, Any] = {"sqlite": lambda n, r: str(Path(tmp) / f"w{n}-{r}.db")}
            if pg_url is not None:
                backends["postgresql"] = lambda n, r: pg_url
            report_writers(backends, args)
            for label, url in (("sqlite", str(Path(tmp) / "ddp.db")), ("postgresql", pg_url)):
                if url is None or args.ddp_rounds == 0:
                    continue
                times = ddp_step_times(url, args.ddp_steps, args.ddp_rounds, args.hidden_dim)
                plain = statistics.median(times["plain"])
                traced = statistics.median(times["traced"])
                print(f"2-rank DDP step ({label}, hidden {args.hidden_dim}): untraced "
                      f"{plain * 1000:.0f} ms, traced {traced * 1000:.0f} ms, "
                      f"ratio {traced / plain:.2f} (medians)")  # fmt: skip
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "write":
        write_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                     float(sys.argv[6]))  # fmt: skip
    elif len(sys.argv) > 1 and sys.argv[1] == "step":
        step_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
