"""Store benchmark: write rate through the run writer against raw sqlite3, read latency, size.

Run from the repository root: ``python benchmarks/store.py [--steps 1000] [--calls 50]``.
Prints, in one run:

* tensor records written per second into a SQLite file through ``store.writer(run).write_step``
  (records built by the trace -> rows -> one transaction per step), next to raw
  ``sqlite3.executemany`` of the very same rows (built beforehand) into the same schema, one
  transaction per step; medians of alternating rounds; the ratio is the figure to watch
  (target >= 0.5);
* the time to read one step's flow and one layer's series from a run of STEPS x CALLS x 3
  tensors (target < 50 ms each), median of repeated reads through a freshly opened store;
* bytes on disk per tensor record of that run (whole file after a checkpoint; target < 200).

``--postgres`` measures PostgreSQL instead, on a throw-away server started the way the tests
start theirs (tests/conftest.py's PostgresServer): tensor records written per second through the
run writer by binary COPY next to its executemany path, with one writer and with two writers at
once (each its own run, its own process), STEPS x CALLS x 3 tensors each (``--pg-steps 20
--pg-calls 1000``: 3,000-row steps); medians of rounds that rotate the order (targets: >= 60k/s
for one writer, >= 100k/s for two). Then the first steps into a fresh database, with and without
the writer's ANALYZE after its first step.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.records import CallRecord, TensorRecord, frozen_mapping
from tracer.store import StoreError, open_store
from tracer.store.engine import INSTALL_POSTGRES
from tracer.store.rows import CALL_COLUMNS, TENSOR_COLUMNS, step_rows
from tracer.store.writer import RunWriter

ROOT = Path(__file__).resolve().parent.parent


def _tensor(slot: str, role: str, shape: tuple[int, ...], seed: float) -> TensorRecord:
    stats = {
        "numel": 32.0 * 64,
        "mean": 0.01 * seed,
        "std": 1.0 + seed / 1000,
        "min": -3.2 - seed / 100,
        "max": 3.3 + seed / 100,
        "abs_mean": 0.79 + seed / 1e4,
        "l2": 45.1 + seed / 10,
        "zero_frac": 0.0,
        "nan_count": 0.0,
        "inf_count": 0.0,
        "near_zero_frac": 0.002,
        "near_one_frac": 0.0,
    }
    return TensorRecord(slot, shape, "float32", "cpu", role=role, stats=frozen_mapping(stats))  # type: ignore[arg-type]


def make_step(step: int, calls: int) -> list[CallRecord]:
    """One step of ``calls`` Linear calls with an input, an output and a gradient each."""
    return [
        CallRecord(
            step,
            seq,
            f"layers.{seq}",
            "Linear",
            inputs=(_tensor("0", "input", (32, 64), step + seq),),
            outputs=(_tensor("0", "output", (32, 64), step + seq + 0.5),),
            grads=(_tensor("0", "grad", (32, 64), step - seq),),
            duration_s=1.5e-5,
            depth=1,
        )
        for seq in range(calls)
    ]


def _writer_rate(path: Path, flows: list[list[CallRecord]]) -> float:
    with open_store(path) as store:
        writer = store.writer(store.create_run(name="bench").id)
        start = time.perf_counter()
        for step, flow in enumerate(flows):
            writer.write_step(step, flow)
        return len(flows) * len(flows[0]) * 3 / (time.perf_counter() - start)


def _raw_rate(path: Path, flows: list[list[CallRecord]]) -> float:
    with open_store(path) as store:
        run_id = store.create_run(name="raw").id
    prepared = [step_rows(run_id, step, flow) for step, flow in enumerate(flows)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    call_sql = f"INSERT INTO calls VALUES ({','.join('?' * len(CALL_COLUMNS))})"
    tensor_sql = f"INSERT INTO tensors VALUES ({','.join('?' * len(TENSOR_COLUMNS))})"
    start = time.perf_counter()
    for call_rows, tensor_rows, _ in prepared:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(call_sql, call_rows)
        conn.executemany(tensor_sql, tensor_rows)
        conn.execute("COMMIT")
    rate = len(flows) * len(flows[0]) * 3 / (time.perf_counter() - start)
    conn.close()
    return rate


def bench_write(tmp: Path, steps: int, calls: int, rounds: int = 5) -> tuple[float, float]:
    """Median tensor records per second (store writer, raw sqlite3.executemany), measured in
    alternating rounds because this machine's speed drifts from one second to the next."""
    flows = [make_step(s, calls) for s in range(steps)]
    ours, raw = [], []
    for i in range(rounds):
        ours.append(_writer_rate(tmp / f"writer{i}.db", flows))
        raw.append(_raw_rate(tmp / f"raw{i}.db", flows))
    return statistics.median(ours), statistics.median(raw)


def bench_read(tmp: Path, steps: int, calls: int) -> tuple[float, float, float, float]:
    """(build seconds, flow ms, series ms, bytes per tensor record) for a STEPS-step run."""
    path = tmp / "big.db"
    start = time.perf_counter()
    with open_store(path) as store:
        run_id = store.create_run(name="big").id
        writer = store.writer(run_id)
        for step in range(steps):
            writer.write_step(step, make_step(step, calls))
    build = time.perf_counter() - start
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    flow_ms, series_ms = [], []
    with open_store(path) as store:
        for i in range(15):
            step = (i * 67) % steps
            t0 = time.perf_counter()
            flow = store.flow(run_id, step)
            t1 = time.perf_counter()
            series = store.series(run_id, f"layers.{(i * 7) % calls}", stat="mean")
            t2 = time.perf_counter()
            assert len(flow) == calls and len(series) == steps
            flow_ms.append((t1 - t0) * 1000)
            series_ms.append((t2 - t1) * 1000)
    records = steps * calls * 3
    return build, statistics.median(flow_ms), statistics.median(series_ms), size / records


def postgres_server() -> Any:
    """A started throw-away PostgreSQL server: tests/conftest.py's PostgresServer, loaded by path
    (the benchmark reuses the tests' way of starting one rather than keeping a copy)."""
    spec = importlib.util.spec_from_file_location("tracer_pg_cluster", ROOT / "tests/conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.PostgresServer()
    server.start()
    return server


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_writer(url: str, copy: bool, steps: int, calls: int, start: Barrier, out: Any) -> None:
    """One writer process: its own run, STEPS steps written once every writer is ready; sends
    (start, end, records, its CPU seconds, its server process's CPU seconds)."""
    flows = [make_step(s, calls) for s in range(steps)]
    with open_store(url) as store:
        writer = RunWriter(store, store.create_run(name="copy" if copy else "executemany").id)
        writer.copy = None if copy else False
        with store.reading() as conn:  # one thread: every step reuses this pooled connection
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        start.wait()
        began, cpu, server = time.monotonic(), time.process_time(), _cpu_s(backend)
        for step, flow in enumerate(flows):
            writer.write_step(step, flow)
        ended = time.monotonic()
        used = (time.process_time() - cpu, _cpu_s(backend) - server)
        out.put((began, ended, steps * calls * 3, *used))


@dataclass
class PgRate:
    """Records per second of some writers at once, and the CPU each record cost."""

    per_s: float
    client_us: float  # writer process CPU per record
    server_us: float  # PostgreSQL server process CPU per record


def _pg_rate(url: str, copy: bool, writers: int, steps: int, calls: int) -> PgRate:
    """Tensor records per second of ``writers`` processes at once (all rows / whole span)."""
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(writers), context.Queue()
    procs = [
        context.Process(target=_pg_writer, args=(url, copy, steps, calls, start, out))
        for _ in range(writers)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a PostgreSQL writer failed (exit status {proc.exitcode})")
    span = max(r[1] for r in results) - min(r[0] for r in results)
    records = sum(r[2] for r in results)
    return PgRate(
        records / span,
        sum(r[3] for r in results) / records * 1e6,
        sum(r[4] for r in results) / records * 1e6,
    )


def bench_postgres(url: str, steps: int, calls: int, rounds: int) -> dict[tuple[str, int], PgRate]:
    """Median of each (method, writers), in rounds that rotate the starting method."""
    cases = [(method, writers) for writers in (1, 2) for method in ("copy", "executemany")]
    _pg_rate(url, True, 1, 2, calls)  # warm-up, untimed: the server's caches, the statistics
    found: dict[tuple[str, int], list[PgRate]] = {case: [] for case in cases}
    for i in range(rounds):
        for method, writers in cases[i % len(cases) :] + cases[: i % len(cases)]:
            found[method, writers].append(_pg_rate(url, method == "copy", writers, steps, calls))
    return {case: _median(rates) for case, rates in found.items()}


def _median(rates: list[PgRate]) -> PgRate:
    return PgRate(
        statistics.median(r.per_s for r in rates),
        statistics.median(r.client_us for r in rates),
        statistics.median(r.server_us for r in rates),
    )


def bench_fresh(server: Any, steps: int, calls: int) -> tuple[float, float]:
    """Records/s of the first STEPS steps into a fresh database, with and without the writer's
    ANALYZE after its first step (binary COPY both times)."""
    rates = []
    for analyze in (True, False):
        name = f"fresh_{'analyzed' if analyze else 'plain'}"
        server.admin(f"CREATE DATABASE {name}")
        flows = [make_step(s, calls) for s in range(steps)]
        with open_store(server.url(name)) as store:
            writer = RunWriter(store, store.create_run(name=name).id)
            writer.analyze = analyze
            began = time.monotonic()
            for step, flow in enumerate(flows):
                writer.write_step(step, flow)
            rates.append(steps * calls * 3 / (time.monotonic() - began))
    return rates[0], rates[1]


def main_postgres(args: argparse.Namespace) -> None:
    """The PostgreSQL measurements, on a server started and stopped here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise SystemExit(f"error: psycopg is not installed ({INSTALL_POSTGRES})") from None
    try:
        server = postgres_server()
    except (ImportError, RuntimeError, OSError) as exc:
        raise SystemExit(f"error: cannot start a PostgreSQL server: {exc}") from None
    try:
        server.admin("CREATE DATABASE bench")
        url = server.url("bench")
        rates = bench_postgres(url, args.pg_steps, args.pg_calls, args.rounds)
        rows = args.pg_calls * 3
        print(f"postgres: {args.pg_steps} steps of {rows:,} tensor records per writer, "
              f"median of {args.rounds} rounds (load {_load()})")  # fmt: skip
        for writers, target in ((1, 60_000), (2, 100_000)):
            copy, many = rates["copy", writers], rates["executemany", writers]
            print(f"  {writers} writer{'s' if writers > 1 else ''}: binary COPY "
                  f"{copy.per_s:,.0f} records/s, executemany {many.per_s:,.0f}/s, "
                  f"ratio {copy.per_s / many.per_s:.2f} (target >= {target:,}/s)")  # fmt: skip
        for method in ("copy", "executemany"):
            one = rates[method, 1]
            ceiling = 1e6 / (one.client_us + one.server_us)
            print(f"  CPU per record, {method}: writer {one.client_us:.1f} us + server "
                  f"{one.server_us:.1f} us (bound on two idle cores: one writer about "
                  f"{ceiling:,.0f}/s, two {2 * ceiling:,.0f}/s)")  # fmt: skip
        analyzed, plain = bench_fresh(server, args.pg_steps, args.pg_calls)
        print(f"  fresh database, first {args.pg_steps} steps: with the writer's ANALYZE "
              f"{analyzed:,.0f}/s, without {plain:,.0f}/s, "
              f"ratio {analyzed / plain:.2f}")  # fmt: skip
    except StoreError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        server.stop()


def _load() -> str:
    load = Path("/proc/loadavg")
    return " ".join(load.read_text().split()[:3]) if load.exists() else "?"


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--write-steps", type=int, default=100)
    parser.add_argument("--postgres", action="store_true", help="measure PostgreSQL instead")
    parser.add_argument("--pg-steps", type=int, default=20)
    parser.add_argument("--pg-calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.postgres:
        main_postgres(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours, raw = bench_write(Path(tmp), args.write_steps, args.calls)
        print(f"write: store writer {ours:,.0f} tensor records/s, raw sqlite3.executemany "
              f"{raw:,.0f}/s, ratio {ours / raw:.2f} (target >= 0.5)")  # fmt: skip
        build, flow_ms, series_ms, per_record = bench_read(Path(tmp), args.steps, args.calls)
        n = args.steps * args.calls * 3
        print(f"run of {args.steps} steps x {args.calls} calls x 3 tensors = {n:,} records "
              f"(written in {build:.1f} s)")  # fmt: skip
        print(f"read: one step's flow {flow_ms:.1f} ms, one layer's series {series_ms:.1f} ms "
              "(median; target < 50 ms each)")  # fmt: skip
        print(f"size: {per_record:.0f} bytes on disk per tensor record (target < 200)")


if __name__ == "__main__":
    main()
