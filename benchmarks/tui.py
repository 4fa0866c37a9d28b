"""Inspector benchmark: how fast the terminal UI shows its screens on a large database.

Run from the repository root: ``python benchmarks/tui.py [--db PATH] [--runs 1000]
[--steps 1000] [--calls 100]``. Builds (or reuses) a SQLite database with RUNS small runs and
two big runs of STEPS traced steps x CALLS calls, then drives the real app headless through
Textual's Pilot and prints, in one run:

* the import time of ``tracer.tui.app`` in a fresh interpreter (torch must not be imported);
* the time from creating the app to the first runs screen with its rows (target < 0.5 s);
* the time from Enter on a big run to its first step's flow on screen (target < 0.5 s);
* the time from ``d`` on the two big runs to their aligned diff on screen (target < 0.5 s);
* the time per cursor move, one layer down, on the run screen and on the runs screen
  (target < 50 ms): from the key event to the cursor moved and the screen repainted, and, for
  comparison, the median of a Pilot key press of the same key and of a key bound to nothing
  (Pilot itself sleeps until the app looks idle: that floor is Pilot's, not the app's).

Every time is taken from the key event to the next screen refresh after the widget holds the
data; a worker's store query is included.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.pilot import Pilot

from tracer.records import CallRecord, ModuleRecord, TensorRecord, frozen_mapping
from tracer.store import Store, open_store
from tracer.tui.app import TracerApp
from tracer.tui.data import StoreReader
from tracer.tui.screens.runs import RunsScreen
from tracer.tui.widgets.diff_table import DiffTable
from tracer.tui.widgets.flow_table import FlowTable
from tracer.tui.widgets.paged_table import PagedTable
from tracer.tui.widgets.run_table import RunTable


def _tensor(slot: str, role: str, width: int, seed: float) -> TensorRecord:
    stats = {"numel": 32.0 * width, "mean": 0.01 * seed, "std": 1.0 + seed / 1e3}
    stats.update({"min": -3.0, "max": 3.0, "abs_mean": 0.8, "l2": 45.0, "zero_frac": 0.0})
    stats.update({"nan_count": 0.0, "inf_count": 0.0})
    shape = (32, width)
    return TensorRecord(slot, shape, "float32", "cpu", role=role, stats=frozen_mapping(stats))  # type: ignore[arg-type]


def modules(calls: int, width: int) -> list[ModuleRecord]:
    """A root and ``calls - 1`` alternating Linear / ReLU layers."""
    found = [ModuleRecord("", "Deep", None, 0, 0, (calls // 2) * (width * width + width))]
    for i in range(1, calls):
        linear = i % 2 == 1
        params = width * width + width if linear else 0
        kind = "Linear" if linear else "ReLU"
        found.append(ModuleRecord(f"layers.{i}", kind, "", 1, params, params, params, params))
    return found


def step_calls(step: int, calls: int, width: int) -> list[CallRecord]:
    """One step: the root's call, then every layer's, each with an input and an output."""
    out = []
    for seq in range(calls):
        path = "" if seq == 0 else f"layers.{seq}"
        kind = "Deep" if seq == 0 else ("Linear" if seq % 2 else "ReLU")
        ins = (_tensor("0", "input", width, seq + step),)
        outs = (_tensor("0", "output", width, seq + step + 1),)
        out.append(CallRecord(step, seq, path, kind, 0, "module", None, ins, outs, (), 1e-4, 1))
    return out


def build(path: Path, runs: int, steps: int, calls: int) -> tuple[int, int]:
    """Write the benchmark database; returns the two big runs' ids."""
    store = open_store(path)
    for i in range(runs):
        run = store.create_run(name=f"run-{i}", pipeline="bench", config={"lr": 10.0**-i % 7})
        writer = store.writer(run.id)
        writer.begin(modules(4, 8), [])
        writer.write_step(0, step_calls(0, 4, 8))
        writer.write_metrics(0, {"loss": 1.0 / (i + 1)})
        writer.end("completed")
    big = []
    for width in (512, 256):
        run = store.create_run(name=f"big-{width}", pipeline="bench", config={"width": width})
        writer = store.writer(run.id)
        writer.begin(modules(calls, width), [])
        for step in range(steps):
            writer.write_step(step, step_calls(step, calls, width))
        writer.end("completed")
        big.append(run.id)
    store.close()
    return big[0], big[1]


def find_big(store: Store) -> tuple[int, int]:
    """The two big runs of an existing benchmark database."""
    return store.get_run("big-512").id, store.get_run("big-256").id


REPEATS = 6
SETTLE_S = 0.3


def import_time() -> float:
    """Seconds to import the app in a fresh interpreter (fails if torch gets imported)."""
    code = "import sys, time; t = time.perf_counter(); import tracer.tui.app; "
    code += "print(time.perf_counter() - t); assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


async def until(check: Callable[[], bool]) -> None:
    """Yield to the app until ``check`` holds, with no fixed sleep."""
    while not check():
        await asyncio.sleep(0.001)


async def painted(app: TracerApp) -> None:
    """Wait for the app's next screen refresh."""
    done = asyncio.Event()
    app.call_after_refresh(done.set)
    await done.wait()


async def timed_key(app: TracerApp, key: str, check: Callable[[], bool]) -> float:
    """Seconds from a key event to ``check`` holding and the screen repainted (after letting
    the app settle first, as a person's next key press would)."""
    await asyncio.sleep(SETTLE_S)
    start = time.perf_counter()
    app.simulate_key(key)
    await until(check)
    await painted(app)
    return time.perf_counter() - start


async def moves(app: TracerApp, table: PagedTable, count: int) -> list[float]:
    """Seconds per cursor move down (key event to repaint)."""
    found = []
    for _ in range(count):
        row = table.cursor_row
        start = time.perf_counter()
        app.simulate_key("down")
        await until(lambda row=row: table.cursor_row == row + 1)
        await painted(app)
        found.append(time.perf_counter() - start)
    return found


async def press_times(pilot: Pilot[None], key: str, count: int) -> list[float]:
    """Seconds per Pilot key press (Pilot sleeps until the app looks idle)."""
    found = []
    for _ in range(count):
        start = time.perf_counter()
        await pilot.press(key)
        found.append(time.perf_counter() - start)
    return found


async def scenario(db: Path, big: tuple[int, int], count: int) -> dict[str, float]:
    """Drive the app through every measured step."""
    results: dict[str, float] = {}
    start = time.perf_counter()
    app = TracerApp(StoreReader.open(str(db)))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: isinstance(app.screen, RunsScreen))
        table = app.screen.query_one(RunTable)
        await until(lambda: table.row_count > 0)
        await painted(app)
        results["first runs screen (app created -> rows painted)"] = time.perf_counter() - start
        results["runs table: rows loaded / total"] = table.loaded_rows / table.total_rows
        results["runs screen: cursor move (key -> repaint)"] = median(
            await moves(app, table, count)
        )
        results["runs screen: Pilot press down"] = median(await press_times(pilot, "down", count))
        results["runs screen: Pilot press, unbound key"] = median(
            await press_times(pilot, "f12", count)
        )

        opened = []
        for _ in range(REPEATS):
            app.screen.query_one(RunTable).go_to(str(big[0]))
            await painted(app)
            opened.append(await timed_key(app, "enter", lambda: flow_rows(app) > 0))
            app.pop_screen()
            await painted(app)
        results["opened run, first time (Enter -> painted)"] = opened[0]
        results["opened run, median of next (cached flow)"] = median(opened[1:])
        app.screen.query_one(RunTable).go_to(str(big[0]))
        await timed_key(app, "enter", lambda: flow_rows(app) > 0)
        flow = app.screen.query_one(FlowTable)
        results["run screen: cursor move (key -> repaint)"] = median(await moves(app, flow, count))
        results["run screen: Pilot press down"] = median(await press_times(pilot, "down", count))
        results["run screen: Pilot press, unbound key"] = median(
            await press_times(pilot, "f12", count)
        )
        results["next step (] -> flow painted)"] = await timed_key(
            app, "right_square_bracket", lambda: flow_step(flow) == 1
        )

        app.pop_screen()
        await painted(app)
        table = app.screen.query_one(RunTable)
        for run_id in big:
            table.go_to(str(run_id))
            await pilot.press("space")
        diffs = []
        for _ in range(REPEATS):
            diffs.append(await timed_key(app, "d", lambda: diff_rows(app) > 0))
            app.pop_screen()
            await painted(app)
        results["diff of the two big runs, first (d -> painted)"] = diffs[0]
        results["diff of the two big runs, median of next"] = median(diffs[1:])
    return results


def flow_rows(app: TracerApp) -> int:
    """Rows in the flow table on screen (0 until that screen is up)."""
    found = app.screen.query(FlowTable)
    return found.first().row_count if found else 0


def flow_step(flow: FlowTable) -> int | None:
    """The step of the call under the flow's cursor."""
    call = flow.current_call()
    return call.step if call is not None else None


def diff_rows(app: TracerApp) -> int:
    """Rows in the diff table on screen (0 until that screen is up)."""
    found = app.screen.query(DiffTable)
    return found.first().row_count if found else 0


def main() -> None:
    """Build or reuse the database, then print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="reuse or create this database file")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--moves", type=int, default=30)
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="tracer-tui-bench-")) / "bench.db"
    if db.exists():
        store = open_store(db)
        big = find_big(store)
        store.close()
        print(f"reusing {db}")
    else:
        start = time.perf_counter()
        big = build(db, args.runs, args.steps, args.calls)
        print(
            f"built {db} in {time.perf_counter() - start:.1f} s: {args.runs} small runs, "
            f"2 runs of {args.steps} steps x {args.calls} calls"
        )
    print(f"import tracer.tui.app: {import_time() * 1000:.0f} ms (torch not imported)")
    for name, value in asyncio.run(scenario(db, big, args.moves)).items():
        shown = f"{value:.0%}" if "/" in name else f"{value * 1000:.1f} ms"
        print(f"{name:<50} {shown}")


if __name__ == "__main__":
    main()
