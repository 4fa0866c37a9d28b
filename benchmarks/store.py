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
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.records import CallRecord, TensorRecord, frozen_mapping
from tracer.store import open_store
from tracer.store.rows import CALL_COLUMNS, TENSOR_COLUMNS, step_rows


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


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--write-steps", type=int, default=100)
    args = parser.parse_args()
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
