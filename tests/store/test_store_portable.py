"""export_run / import_run: a run moves between databases (SQLite to PostgreSQL) intact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from store_records import sample_flow, sample_modules, tensor

from tracer.records import CallRecord
from tracer.store import Store, StoreError, open_store
from tracer.store.portable import import_run


def recorded(store: Store) -> int:
    """A finished run with NaN/Inf statistics and metrics, tags and a config."""
    run = store.create_run(
        name="moving", pipeline="sentiment", config={"hidden_dim": 64}, tags={"who": "me"},
        seed=3, group_id="g", rank=1, world_size=2,
    )  # fmt: skip
    writer = store.writer(run.id)
    writer.begin(sample_modules(), ["a note"])
    for step in (0, 3):
        writer.write_step(step, sample_flow(step, scale=step + 1.0))
        writer.write_metrics(step, {"loss": math.nan if step else 0.5, "lr": 0.1})
    odd = tensor(mean=math.nan, max=math.inf, custom=-math.inf)
    writer.write_step(9, [CallRecord(9, 0, "", "Net", outputs=(odd,))])
    writer.end("failed", "RuntimeError: boom")
    return run.id


@pytest.mark.postgres
def test_export_import_round_trip_sqlite_to_postgres(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "run.jsonl"
    with open_store(tmp_path / "a.db") as source:
        run_id = recorded(source)
        source.export_run(run_id, path)
        original = source.get_run(run_id)
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    with open_store(postgres_url) as target:
        copy = target.import_run(path)
        fields = ("name", "pipeline", "status", "error", "config", "tags", "notes", "seed",
                  "host", "pid", "started_at", "finished_at", "updated_at", "rank",
                  "world_size", "group_id", "steps", "python_version", "command")  # fmt: skip
        assert {f: getattr(copy, f) for f in fields} == {f: getattr(original, f) for f in fields}
        assert math.isnan(copy.last_metrics["loss"]) and copy.last_metrics["lr"] == 0.1
        assert target.steps(copy.id) == [0, 3, 9]
        assert target.flow(copy.id, 3) == sample_flow(3, scale=4.0)
        stats = target.flow(copy.id, 9)[0].outputs[0].stats
        assert math.isnan(stats["mean"]) and (stats["max"], stats["custom"]) == (
            math.inf,
            -math.inf,
        )
        assert target.module_tree(copy.id) == sample_modules()
        assert [(m.step, m.name) for m in target.metrics(copy.id)] == [
            (0, "loss"), (0, "lr"), (3, "loss"), (3, "lr"),
        ]  # fmt: skip


def test_import_into_same_store_gets_a_new_id(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with open_store(tmp_path / "a.db") as store:
        run_id = recorded(store)
        store.export_run(run_id, path)
        copy = import_run(store, path, as_new=True)
        assert copy.id != run_id and store.flow(copy.id, 0) == store.flow(run_id, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"hello": 1}\n', "not a layer-tracer run export"),
        ('{"format": "layer-tracer-run", "version": 99}\n', "export version 99"),
        ("not json\n", "not a JSON line"),
    ],
)
def test_import_run_refuses_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with open_store(tmp_path / "a.db") as store, pytest.raises(StoreError, match=message):
        store.import_run(path)


def test_import_run_malformed_body_leaves_no_half_run(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with open_store(tmp_path / "a.db") as store:
        store.export_run(recorded(store), path)
        lines = path.read_text().splitlines()
        path.write_text(
            "\n".join([*lines[:4], '{"type": "step", "step": 5, "calls": [{}]}']) + "\n"
        )
        with pytest.raises(StoreError, match=r"run.jsonl:5: field calls.0.step: missing"):
            store.import_run(path)
        assert len(store.list_runs()) == 1


def test_import_run_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with open_store(tmp_path / "a.db") as store, pytest.raises(StoreError, match="cannot read"):
        store.import_run(tmp_path / "nope.jsonl")
