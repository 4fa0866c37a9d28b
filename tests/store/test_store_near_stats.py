"""near_zero_frac and near_one_frac in the store: their columns (revision 0004), the ``special``
bits, an upgrade of a database written at revision 0003, and export/import."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from store_records import sample_flow, sample_modules, tensor

from tracer.records import BUILTIN_STATS, CallRecord
from tracer.store import Store, StoreError, open_store
from tracer.store.migrate import head, upgrade_to
from tracer.store.schema import MAX_STAT_COLUMNS, STAT_COLUMNS

NEW = ("near_zero_frac", "near_one_frac")
#: The statistic columns of revision 0001 (tracer/store/migrations/versions/0001_first_schema.py).
FIRST = ("numel", "mean", "std", "min", "max", "abs_mean", "l2", "zero_frac", "nan_count",
         "inf_count")  # fmt: skip


def test_near_columns_come_last_so_old_special_bits_keep_their_meaning() -> None:
    assert (*FIRST, *NEW) == STAT_COLUMNS
    assert set(BUILTIN_STATS) == set(STAT_COLUMNS)


def test_special_mask_of_every_stat_column_fits_the_32_bit_column() -> None:
    assert len(STAT_COLUMNS) <= MAX_STAT_COLUMNS
    assert (1 << (2 * MAX_STAT_COLUMNS)) - 1 <= 2**31 - 1


def test_every_stat_column_keeps_nan_and_inf_up_to_the_last_bits(store: Store) -> None:
    odd = tensor(inf_count=math.inf, near_zero_frac=math.nan, near_one_frac=-math.inf)
    run = store.create_run(name="bits")
    store.writer(run.id).write_step(0, [CallRecord(0, 0, "", "Net", outputs=(odd,))])
    got = store.flow(run.id, 0)[0].outputs[0].stats
    assert (got["inf_count"], got["near_one_frac"]) == (math.inf, -math.inf)
    assert math.isnan(got["near_zero_frac"]) and got["zero_frac"] == 0.125


def test_near_fractions_round_trip_as_columns_and_series(store: Store) -> None:
    run = store.create_run(name="near")
    writer = store.writer(run.id)
    for step in (0, 1):
        writer.write_step(step, sample_flow(step, scale=1.0 + step))
    out = store.flow(run.id, 1)[2].outputs[0]  # the LSTM's output
    assert (out.stats["near_zero_frac"], out.stats["near_one_frac"]) == (0.0625, 0.25)
    assert store.series(run.id, "lstm", stat="near_one_frac") == [(0, 0.25), (1, 0.25)]
    assert store.flow(run.id, 1) == sample_flow(1, scale=2.0)


# --- a database written at revision 0003 ------------------------------------------------------


def _at_0003(url: str) -> None:
    """A database at revision 0003 holding one run with two steps of one tensor each, written
    with plain SQL in that revision's layout (no near-value columns)."""
    engine = create_engine(url)
    upgrade_to(engine, "0003")
    stats = ", ".join(FIRST)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (name, status, config, started_at, updated_at, rank, "
                "world_size, tags, notes, step_count, last_metrics) VALUES ('old', "
                "'completed', '{}', 1.0, 2.0, 0, 1, '{}', '[]', 2, '{}')"
            )
        )
        run = conn.execute(text("SELECT id FROM runs WHERE name = 'old'")).scalar()
        for step in (0, 1):
            conn.execute(
                text(
                    "INSERT INTO calls (run_id, step, seq, module, type, call_index, kind, "
                    "depth) VALUES (:run, :step, 0, 'sig', 'Sigmoid', 0, 'module', 1)"
                ),
                {"run": run, "step": step},
            )
            conn.execute(
                text(
                    "INSERT INTO tensors (run_id, step, seq, pos, role, slot, shape, dtype, "
                    f"device, requires_grad, {stats}, special) VALUES (:run, :step, 0, 0, "
                    "'output', '0', '4,2', 'float32', 'cpu', 0, 8, 0.5, 0.25, 0.0, NULL, 0.5, "
                    "1.5, 0.125, 0, 0, 512)"  # max is +Inf: NULL and code 2 at bits 8-9
                ),
                {"run": run, "step": step},
            )
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    engine.dispose()


def test_upgrade_from_0003_reads_old_tensors_without_the_new_statistics(db_url: str) -> None:
    _at_0003(db_url)
    with open_store(db_url) as store:
        run = store.get_run("old")
        (call,) = store.flow(run.id, 1)
        stats = dict(call.outputs[0].stats)
        assert stats == {
            "numel": 8.0, "mean": 0.5, "std": 0.25, "min": 0.0, "max": math.inf,
            "abs_mean": 0.5, "l2": 1.5, "zero_frac": 0.125, "nan_count": 0.0, "inf_count": 0.0,
        }  # fmt: skip
        assert store.series(run.id, "sig", stat="near_zero_frac") == []  # not recorded, not 0
        assert store.series(run.id, "sig", stat="max") == [(0, math.inf), (1, math.inf)]
        # the same database now records them
        new = store.create_run(name="new")
        store.writer(new.id).write_step(0, sample_flow(0))
        assert store.flow(new.id, 0) == sample_flow(0)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
        near = "SELECT near_zero_frac, near_one_frac FROM tensors WHERE run_id = :run"
        assert conn.execute(text(near), {"run": run.id}).all() == [(None, None), (None, None)]
    engine.dispose()
    assert head() == "0004"


def test_upgrade_from_0003_adds_the_columns_without_rebuilding_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _at_0003(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        before = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'tensors'"
        ).fetchone()
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        after = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tensors'").fetchone()
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tensors)")]
    assert after == before  # the same b-tree: ALTER TABLE ADD COLUMN, no copy of the rows
    assert columns[-2:] == list(NEW)


# --- export and import ------------------------------------------------------------------------


def _exported(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "run.jsonl"
    with open_store(tmp_path / "a.db") as store:
        run = store.create_run(name="moving")
        writer = store.writer(run.id)
        writer.begin(sample_modules(), [])
        writer.write_step(0, sample_flow(0))
        writer.end("completed")
        store.export_run(run.id, path)
    return path, [json.loads(line) for line in path.read_text().splitlines()]


def _stats_of_every_tensor(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    calls = [call for line in lines if line.get("type") == "step" for call in line["calls"]]
    return [t["stats"] for c in calls for role in ("inputs", "outputs", "grads") for t in c[role]]


def test_export_import_keeps_the_near_fractions(tmp_path: Path) -> None:
    path, lines = _exported(tmp_path)
    floats = [s for s in _stats_of_every_tensor(lines) if "mean" in s and "std" in s]
    assert floats and all(s["near_one_frac"] == 0.25 for s in floats)
    with open_store(tmp_path / "b.db") as target:
        copy = target.import_run(path)
        assert target.flow(copy.id, 0) == sample_flow(0)


def test_an_export_made_before_the_near_fractions_imports_without_them(tmp_path: Path) -> None:
    path, lines = _exported(tmp_path)
    for stats in _stats_of_every_tensor(lines):
        for key in NEW:
            stats.pop(key, None)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with open_store(tmp_path / "b.db") as target:
        copy = target.import_run(path)
        read = [t.stats for c in target.flow(copy.id, 0) for t in c.inputs + c.outputs + c.grads]
        assert read and not any(set(NEW) & set(stats) for stats in read)
        assert target.flow(copy.id, 0)[2].outputs[0].stats["zero_frac"] == 0.125


@pytest.mark.parametrize("value", ["lots", None, True, [0.5]])
def test_import_refuses_a_near_fraction_that_is_not_a_number(tmp_path: Path, value: Any) -> None:
    path, lines = _exported(tmp_path)
    stats = next(s for s in _stats_of_every_tensor(lines) if "near_zero_frac" in s)
    stats["near_zero_frac"] = value
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with open_store(tmp_path / "b.db") as target:
        with pytest.raises(StoreError, match=r"stats\.near_zero_frac"):
            target.import_run(path)
        assert target.list_runs() == []
