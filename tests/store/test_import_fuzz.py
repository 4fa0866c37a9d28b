"""Fuzzing ``tracer import``: every file is refused in one line or imported whole and readable.

Generated JSON lines, and truncated and mutated real exports, go through the code the command
calls (``check_export`` then ``import_run``); a sample goes through the real ``tracer import``
process. Either way the database passes ``PRAGMA integrity_check`` and holds no partial run.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from store_records import sample_flow, sample_modules

from tracer.cli import cli
from tracer.store import Store, StoreError, open_store
from tracer.store.portable import import_run
from tracer.store.validate import check_export
from tracer.tui.data import StoreReader

ROOT = Path(__file__).parents[2]
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
Lines = list[dict[str, Any]]

#: Any JSON value, with the awkward ones: huge integers, NUL, surrogates, NaN names, nesting.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63, -(2**63) - 1]),
    # no subnormals: a worker that ran the sentiment pipeline in-process flushes them to zero
    # (torch.set_flush_denormal), and hypothesis refuses to generate them there
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.sampled_from([5e-324, 5.562684646268003e-309]),  # subnormals, as JSON text holds them
    st.text(max_size=30),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "", "\x00", "\ud800", "x" * 300]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Lines:
    """A real export's lines: a run with modules, two traced steps and metrics."""
    folder = tmp_path_factory.mktemp("source")
    with open_store(folder / "a.db") as store:
        run = store.create_run(name="fuzzed", config={"hidden": 8}, tags={"t": "1"})
        writer = store.writer(run.id)
        writer.begin(sample_modules(), ["a note"])
        for step in (0, 1):
            writer.write_step(step, sample_flow(step), {"loss": math.nan if step else 0.5})
        writer.end("completed")
        store.export_run(run.id, folder / "run.jsonl")
    return [json.loads(line) for line in (folder / "run.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """One SQLite database every example is imported into (copies: ``as_new``)."""
    folder = tmp_path_factory.mktemp("target")
    with open_store(folder / "t.db") as store:
        yield store, folder


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


@st.composite
def mutated(draw: st.DrawFn, lines: Lines) -> str:
    """A real export with one value replaced, one key dropped or added, or a line repeated."""
    lines = copy.deepcopy(lines)
    index = draw(st.integers(0, len(lines) - 1))
    paths = [p for p in _paths(lines[index]) if p]
    path = draw(st.sampled_from(paths))
    parent: Any = lines[index]
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["replace", "replace", "drop", "add", "repeat"]))
    if action == "replace":
        parent[path[-1]] = draw(JSON)
    elif action == "drop" and isinstance(parent, dict):
        parent.pop(path[-1])
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(JSON)
    elif action == "repeat":
        lines.insert(index, copy.deepcopy(lines[index]))
    return "".join(json.dumps(line) + "\n" for line in lines)


@st.composite
def truncated(draw: st.DrawFn, lines: Lines) -> str:
    """A real export cut anywhere (a download that stopped)."""
    text = "".join(json.dumps(line) + "\n" for line in lines)
    return text[: draw(st.integers(0, len(text)))]


@st.composite
def generated(draw: st.DrawFn) -> str:
    """JSON lines shaped like an export: the header, a run line and body lines, any values."""
    run_keys = st.sampled_from(["name", "status", "started_at", "updated_at", "rank", "config"])
    run = {"type": "run", **draw(st.dictionaries(run_keys, JSON, max_size=6))}
    if draw(st.booleans()):
        run.update(name="g", status="completed", started_at=1.0, updated_at=2.0)
    body_kinds = st.sampled_from(["step", "metrics", "modules", "other"])
    body = [
        {
            "type": draw(body_kinds),
            **draw(
                st.dictionaries(
                    st.sampled_from(["step", "calls", "values", "modules"]), JSON, max_size=3
                )
            ),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    header = draw(st.sampled_from([{"format": "layer-tracer-run", "version": 1}, {"format": 1}]))
    return "".join(json.dumps(line) + "\n" for line in [header, run, *body])


def _read_everything(store: Store, folder: Path, run_id: int) -> None:
    """What ``runs``, ``show``, ``diff``, ``export`` and the TUI read of an imported run."""
    run = store.get_run(run_id)
    assert run_id in [r.id for r in store.list_runs()]
    steps = store.steps(run_id)
    assert len(steps) == run.steps
    for step in steps:
        store.flow(run_id, step)
    store.module_tree(run_id)
    store.metrics(run_id)
    if steps:
        store.diff(run_id, run_id)
    again = folder / "again.jsonl"
    store.export_run(run_id, again)
    check_export(again)
    inspector = StoreReader(store, store.where)
    assert run_id in [r.id for r in inspector.runs()]
    for step in inspector.steps(run_id)[:2]:
        inspector.flow(run, step)
    inspector.modules(run)
    inspector.metrics(run_id)
    db = str(folder / "t.db")
    commands = [["runs"], ["export", str(run_id), "-o", str(again)]]
    if steps:  # without one, show and diff say so in one line
        commands += [["show", str(run_id)], ["diff", str(run_id), str(run_id)]]
    for args in commands:
        done = CliRunner().invoke(cli, [*args, "--db", db], catch_exceptions=False)
        assert done.exit_code == 0, (args, done.output)


def _integrity(folder: Path) -> None:
    with sqlite3.connect(folder / "t.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _import_or_refuse(target: tuple[Store, Path], text: str) -> None:
    store, folder = target
    path = folder / "in.jsonl"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = [r.id for r in store.list_runs()]
    try:
        check_export(path)
        run = import_run(store, path, as_new=True, checked=True)
    except StoreError as exc:
        event("refused")
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
        assert [r.id for r in store.list_runs()] == before
    else:
        event("imported")
        _read_everything(store, folder, run.id)
    _integrity(folder)


@FUZZ
@given(data=st.data())
def test_import_fuzz_mutated_exports(data: st.DataObject, exported: Lines, target: Any) -> None:
    _import_or_refuse(target, data.draw(mutated(exported)))


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_import_fuzz_truncated_exports(data: st.DataObject, exported: Lines, target: Any) -> None:
    _import_or_refuse(target, data.draw(truncated(exported)))


@FUZZ
@given(text=generated())
def test_import_fuzz_generated_lines(text: str, target: Any) -> None:
    _import_or_refuse(target, text)


@settings(FUZZ, max_examples=10)
@given(data=st.data())
def test_import_fuzz_through_the_real_command(data: st.DataObject, exported: Lines) -> None:
    text = data.draw(st.one_of(mutated(exported), truncated(exported), generated()))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.jsonl"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, "-m", "tracer", "import", str(path), "--db", "t.db"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "Traceback" not in done.stderr
        if done.returncode == 0:
            listed = subprocess.run(
                [sys.executable, "-m", "tracer", "runs", "--db", "t.db"],
                cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert listed.returncode == 0, listed.stderr
        else:
            assert done.returncode == 1
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        db = Path(folder) / "t.db"
        if db.exists():
            with sqlite3.connect(db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
