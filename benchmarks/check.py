"""Check benchmark: ``tracer check`` on a run of STEPS traced steps x CALLS calls (target < 2 s).

Run from the repository root: ``python benchmarks/check.py [--steps 1000] [--calls 100]``.
The run is written straight through the store's run writer from synthetic records (a root
module and CALLS - 1 leaf layers cycling Linear, ReLU, Sigmoid, Tanh; an input, an output and
an output gradient each: 3 tensor records per call), so building it takes seconds, not a
training. Prints, each the median of ROUNDS:

* the whole command, ``tracer check RUN --db FILE`` in a fresh interpreter (what a user waits
  for: start-up, reading every step, every built-in rule, the table);
* in process: ``check_run`` (the rules over the stored run, read as they ask), next to the same
  rules over every flow read into memory first, with both reports checked equal.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.records import CallRecord, ModuleRecord, ParamRecord, TensorRecord, frozen_mapping
from tracer.store import open_store
from tracer.store.schema import STAT_COLUMNS

_TYPES = ("Linear", "ReLU", "Sigmoid", "Tanh")


def _stats(seed: float, zero_frac: float) -> dict[str, float]:
    stats = {
        "numel": 32.0 * 64,
        "mean": 0.01 * (seed % 7),
        "std": 1.0 + (seed % 5) / 10,
        "min": -3.2 - (seed % 3) / 10,
        "max": 3.3 + (seed % 4) / 10,
        "abs_mean": 0.79,
        "l2": 45.1 + (seed % 9),
        "zero_frac": zero_frac,
        "nan_count": 0.0,
        "inf_count": 0.0,
        "near_zero_frac": 0.05,
        "near_one_frac": 0.02,
    }
    # only what the schema stores as columns: a synthetic run must not grow the extras table
    return {k: v for k, v in stats.items() if k in STAT_COLUMNS}


def _tensor(role: str, seed: float, zero_frac: float = 0.0) -> TensorRecord:
    stats = frozen_mapping(_stats(seed, zero_frac))
    return TensorRecord("0", (32, 64), "float32", "cpu", role=role, stats=stats)  # type: ignore[arg-type]


def make_step(step: int, calls: int) -> list[CallRecord]:
    """One step: the root call, then ``calls - 1`` leaf layers (input, output, gradient each)."""
    flow = [
        CallRecord(
            step,
            0,
            "",
            "Sequential",
            inputs=(_tensor("input", step),),
            outputs=(_tensor("output", step + 1),),
            grads=(_tensor("grad", step + 2),),
        )
    ]
    for seq in range(1, calls):
        kind = _TYPES[seq % len(_TYPES)]
        zeros = 0.5 if kind == "ReLU" else 0.0
        flow.append(
            CallRecord(
                step,
                seq,
                str(seq),
                kind,
                inputs=(_tensor("input", step + seq),),
                outputs=(_tensor("output", step + seq + 0.5, zeros),),
                grads=(_tensor("grad", step - seq),),
                duration_s=1.5e-5,
                depth=1,
            )
        )
    return flow


def _modules(calls: int) -> list[ModuleRecord]:
    """The root and its leaves; each Linear has a weight and a bias (the gradient rules read
    the layers with parameters)."""
    root = ModuleRecord("", "Sequential", None, 0)
    leaves = []
    for i in range(1, calls):
        kind = _TYPES[i % len(_TYPES)]
        params: tuple[ParamRecord, ...] = ()
        if kind == "Linear":
            params = (
                ParamRecord("weight", (64, 64), "float32", 4096, True),
                ParamRecord("bias", (64,), "float32", 64, True),
            )
        own = sum(p.numel for p in params)
        leaves.append(ModuleRecord(str(i), kind, "", 1, own, own, own, own, "", params))
    return [root, *leaves]


def build(path: Path, steps: int, calls: int) -> int:
    """Write the synthetic run into a new SQLite file; its id."""
    with open_store(path) as store:
        run = store.create_run(name="check-bench", pipeline="synthetic")
        writer = store.writer(run.id)
        writer.begin(_modules(calls), ())
        for step in range(steps):
            writer.write_step(step, make_step(step, calls))
        writer.end("completed", None)
        return run.id


def _command(path: Path, run_id: int) -> float:
    command = [sys.executable, "-m", "tracer", "check", str(run_id), "--db", str(path)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tracer check failed ({done.returncode}): {done.stderr.strip()}")
    return took


def _in_process(path: Path, run_id: int) -> tuple[float, float]:
    """``check_run`` (what the command runs), and the same rules over every flow read into
    memory first (how a check read a run before StoredRecords), in one store."""
    from tracer.checks import RunRecords, check_records, check_run
    from tracer.checks.builtin import BUILTIN_RULES

    with open_store(path) as store:
        run = store.get_run(run_id)
        start = time.perf_counter()
        stored = check_run(store, run, BUILTIN_RULES)
        lazy = time.perf_counter() - start
        start = time.perf_counter()
        records = RunRecords(run, store.flows(run_id), store.module_tree(run_id))
        eager = check_records(records, BUILTIN_RULES)
        took = time.perf_counter() - start
        if eager != stored:
            raise SystemExit("the stored check and the check in memory disagree")
        return lazy, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.db"
        start = time.perf_counter()
        run_id = build(path, args.steps, args.calls)
        print(
            f"run of {args.steps} steps x {args.calls} calls x 3 tensors "
            f"written in {time.perf_counter() - start:.1f} s"
        )
        command = statistics.median(_command(path, run_id) for _ in range(args.rounds))
        parts = [_in_process(path, run_id) for _ in range(args.rounds)]
        lazy = statistics.median(p[0] for p in parts)
        eager = statistics.median(p[1] for p in parts)
        print(f"tracer check (whole command):  {command:.2f} s  (target < 2 s)")
        print(f"  in process: check_run {lazy:.2f} s; every flow read first {eager:.2f} s")
        print(f"  ({eager / lazy:.1f}x)")


if __name__ == "__main__":
    main()
