"""Importing a run export: every field of every line is checked before anything is written."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from store_records import sample_flow, sample_modules

from tracer.store import Store, open_store
from tracer.store.portable import DuplicateRun, import_run
from tracer.store.validate import MAX_CONFIG_DEPTH, ImportRefused, check_export

Lines = list[dict[str, Any]]


def record(store: Store) -> int:
    """A finished run with two traced steps, metrics (one NaN), tags, a config and notes."""
    run = store.create_run(
        name="moving", pipeline="p", config={"hidden": 8}, tags={"who": "me"}, world_size=2
    )
    writer = store.writer(run.id)
    writer.begin(sample_modules(), ["a note"])
    for step in (0, 1):
        writer.write_step(step, sample_flow(step), {"loss": math.nan if step else 0.5})
    writer.end("completed")
    return run.id


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Lines:
    """The lines of a real export: header, run, modules, step 0, step 1, metrics 0, 1."""
    folder = tmp_path_factory.mktemp("export")
    with open_store(folder / "a.db") as store:
        store.export_run(record(store), folder / "run.jsonl")
    return [json.loads(line) for line in (folder / "run.jsonl").read_text().splitlines()]


def write(path: Path, lines: Lines) -> Path:
    """Write JSON lines (strict JSON) to ``path``."""
    path.write_text("".join(json.dumps(line, allow_nan=False) + "\n" for line in lines))
    return path


def refused(tmp_path: Path, lines: Lines) -> str:
    """Import ``lines`` into a database holding one run; the error, with nothing written."""
    path = write(tmp_path / "bad.jsonl", lines)
    with open_store(tmp_path / "target.db") as store:
        kept = record(store)
        with pytest.raises(ImportRefused) as caught:
            import_run(store, path)
        assert [r.id for r in store.list_runs()] == [kept]
        assert store.engine.dialect.name == "sqlite"
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix(f"{path}:")


def _set(line: int, dotted: str, value: Any) -> Callable[[Lines], None]:
    def change(lines: Lines) -> None:
        *parents, last = dotted.split(".")
        target: Any = lines[line]
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _drop(line: int, key: str) -> Callable[[Lines], None]:
    return lambda lines: lines[line].pop(key)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


CASES = [
    (_set(1, "rank", "0"), "2: field rank: expected an integer, got '0'"),
    (_set(1, "rank", 2**31), "2: field rank: 2147483648 is outside 0 to 2,147,483,647"),
    (_set(1, "rank", 2), "2: field rank: rank 2 is not below world_size 2"),
    (_set(1, "rank", True), "2: field rank: expected an integer, got true"),
    (_set(1, "world_size", 0), "2: field world_size: 0 is outside 1 to 2,147,483,647"),
    (_set(1, "pid", -4), "2: field pid: -4 is outside 0 to 2,147,483,647"),
    (_set(1, "seed", 2**63), "2: field seed: 9223372036854775808 is outside"),
    (_set(1, "name", None), "2: field name: expected a string, got null"),
    (_set(1, "name", "a\x00b"), "2: field name: run name 'a\\x00b' contains a NUL character"),
    (_set(1, "host", "h" * 256), "2: field host: runs.host 'hhhhh"),
    (_set(1, "status", "done"), "2: field status: 'done' is not one of running, completed"),
    (_set(1, "started_at", "yesterday"), "2: field started_at: expected a number, got 'yes"),
    (_set(1, "started_at", 1e300), "2: field started_at: 1e+300 is not a time between 1970"),
    (_set(1, "finished_at", -1), "2: field finished_at: -1 is not a time between 1970"),
    (_set(1, "config", []), "2: field config: expected an object, got a list of 0 items"),
    (
        _set(1, "config", {"deep": _nested(MAX_CONFIG_DEPTH)}),
        f"2: field config.deep{'.a' * (MAX_CONFIG_DEPTH - 1)}: nested more than 32 levels deep",
    ),
    (_set(1, "config", {"k" * 201: 1}), "2: field config: config key 'kkkk"),
    (_set(1, "tags", {"a": 1}), "2: field tags.a: expected a string, got 1"),
    (_set(1, "notes", "x"), "2: field notes: expected a list of strings, got 'x'"),
    (_set(1, "notes", ["ok", 3]), "2: field notes.1: expected a string, got 3"),
    (_set(1, "colour", "red"), "2: field colour: unknown key"),
    (_drop(1, "name"), "2: field name: missing"),
    (_set(2, "modules.1.depth", -1), "3: field modules.1.depth: -1 is outside 0 to"),
    (_set(2, "modules.1.parameters.0.shape", [2, -1]), "3: field modules.1.parameters.0.shape.1"),
    (_set(2, "modules.2.path", "emb"), "3: field modules.2.path: module 'emb' is listed twice"),
    (_set(2, "modules.0.params_total", 2**63), "3: field modules.0.params_total: 9223372036"),
    (_set(3, "step", -1), "4: field step: -1 is outside 0 to 2,147,483,647"),
    (_set(3, "step", "0"), "4: field step: expected an integer, got '0'"),
    (_set(3, "calls", []), "4: field calls: a traced step holds at least one call"),
    (_set(3, "calls.0.step", 7), "4: field calls.0.step: 7 is not the line's step 0"),
    (_set(3, "calls.1.seq", 0), "4: field calls.1.seq: seq 0 is given twice in step 0"),
    (_set(3, "calls.0.call_index", 1.5), "4: field calls.0.call_index: expected an integer"),
    (_set(3, "calls.0.kind", "layer"), "4: field calls.0.kind: 'layer' is not one of module, op"),
    (_set(3, "calls.0.depth", 2**31), "4: field calls.0.depth: 2147483648 is outside"),
    (_set(3, "calls.0.duration_s", "fast"), "4: field calls.0.duration_s: expected a number"),
    (_set(3, "calls.0.outputs.0.shape", "4x8"), "4: field calls.0.outputs.0.shape: expected a"),
    (_set(3, "calls.0.outputs.0.shape", [1] * 65), "4: field calls.0.outputs.0.shape: 65 dim"),
    (_set(3, "calls.0.outputs.0.shape.0", 2**63), "4: field calls.0.outputs.0.shape.0: expected"),
    (_set(3, "calls.0.outputs.0.role", "input"), "4: field calls.0.outputs.0.role: 'input' is"),
    (_set(3, "calls.0.inputs.0.role", "grad"), "4: field calls.0.inputs.0.role: 'grad' is not"),
    (_set(3, "calls.0.outputs.0.dtype", "f" * 51), "4: field calls.0.outputs.0.dtype: tensors.d"),
    (_set(3, "calls.0.outputs.0.slot", "\ud800"), "4: field calls.0.outputs.0.slot: tensor slot"),
    (_set(3, "calls.0.outputs.0.stats.mean", "nan"), "4: field calls.0.outputs.0.stats.mean: 'n"),
    (_set(3, "calls.0.outputs.0.stats.mean", True), "4: field calls.0.outputs.0.stats.mean: ex"),
    (_set(3, "calls.0.outputs.0.stats.s" * 1, None), "4: field calls.0.outputs.0.stats.s: expe"),
    (_set(3, "calls.0.outputs.0.requires_grad", 1), "4: field calls.0.outputs.0.requires_grad"),
    (_set(3, "calls.0.outputs.0.extra", 1), "4: field calls.0.outputs.0.extra: unknown key"),
    (lambda lines: lines.insert(4, lines[3]), "5: field step: step 0 is already given on line 4"),
    (_set(5, "values.loss", "high"), "6: field values.loss: 'high' is not a number"),
    (_set(5, "values", {"m" * 201: 1.0}), "6: field values.mmmm"),
    (_set(6, "step", 0), "7: field step: step 0 is already given on line 6"),
    (_set(6, "type", "log"), "7: field type: 'log' is not one of step, metrics, modules"),
    (_set(0, "version", 2), "1: field version: export version 2, expected 1"),
]


@pytest.mark.parametrize(("change", "expected"), CASES)
def test_import_validation_refuses_bad_field_and_writes_nothing(
    tmp_path: Path, exported: Lines, change: Callable[[Lines], None], expected: str
) -> None:
    lines = copy.deepcopy(exported)
    change(lines)
    assert refused(tmp_path, lines).startswith(expected)


def test_import_validation_refuses_the_bad_field_of_the_last_line_before_writing(
    tmp_path: Path, exported: Lines
) -> None:
    lines = copy.deepcopy(exported)
    lines[-1]["values"]["loss"] = [1]
    assert (
        refused(tmp_path, lines)
        == f"{len(lines)}: field values.loss: expected a number, got a list of 1 items"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "step", "step": 0, "step": 1, "calls": []}', "the key 'step' is given twice"),
        ('{"type": "metrics", "step": 9, "values": {"loss": NaN}}', "not a JSON line (NaN is"),
        ('{"type": "metrics", "step": 9, "values": {"loss": 1e999}}', "field values.loss: inf"),
        (
            '{"type": "metrics", "step": 9, "values": {"loss": 1' + "0" * 5000 + "}}",
            "than 4,300 digits",
        ),
        ("[" * 100_000, "not a JSON line (nested too deeply)"),
        ('{"type": "modules", "modules": []}', "a second modules line (the first is line 3)"),
        ("[1, 2]", "expected an object, got a list of 2 items"),
        ("not json", "not a JSON line (Expecting value at column 1)"),
    ],
    ids=["duplicate-key", "nan", "1e999", "digits", "deep", "modules-twice", "list", "text"],
)
def test_import_validation_refuses_bad_json_text(
    tmp_path: Path, exported: Lines, text: str, expected: str
) -> None:
    path = tmp_path / "bad.jsonl"
    body = "".join(json.dumps(line) + "\n" for line in exported)
    path.write_text(body + text + "\n")
    with pytest.raises(ImportRefused) as caught:
        check_export(path)
    assert str(caught.value).startswith(f"{path}:{len(exported) + 1}: ")
    assert expected in str(caught.value)


def test_import_validation_refuses_a_100kb_run_name_quickly(
    tmp_path: Path, exported: Lines
) -> None:
    lines = copy.deepcopy(exported)
    lines[1]["name"] = "n" * 100_000
    started = time.perf_counter()
    message = refused(tmp_path, lines)
    assert time.perf_counter() - started < 2.0
    assert message.startswith("2: field name: run name 'nnnn")
    assert "is 100,000 characters long; the limit is 200" in message
    assert len(message) < 200  # the value itself is never echoed whole


def test_import_validation_is_linear_on_a_huge_line(tmp_path: Path, exported: Lines) -> None:
    path = tmp_path / "huge.jsonl"
    timings = []
    for size in (2_000_000, 8_000_000):
        lines = copy.deepcopy(exported)
        lines[3]["calls"][0]["outputs"][0]["slot"] = "s" * size
        write(path, lines)
        started = time.perf_counter()
        with pytest.raises(ImportRefused, match=r"field calls\.0\.outputs\.0\.slot: tensor slot"):
            check_export(path)
        timings.append(time.perf_counter() - started)
    assert timings[1] < 2.0
    assert timings[1] < 4 * timings[0] + 0.5  # 4x the size: about 4x the time, never 16x


def test_import_validation_accepts_a_real_export_and_reads_it_back(
    tmp_path: Path, exported: Lines
) -> None:
    path = write(tmp_path / "run.jsonl", exported)
    summary = check_export(path)
    assert (summary.steps, summary.metric_lines, summary.modules) == (2, 2, 4)
    with open_store(tmp_path / "b.db") as store:
        run = import_run(store, path)
        assert (run.name, run.status, run.steps, run.world_size) == ("moving", "completed", 2, 2)
        assert store.flow(run.id, 1) == sample_flow(1)
        assert math.isnan(store.metrics(run.id)[1].value)


def test_import_validation_same_origin_refused_unless_as_new(
    tmp_path: Path, exported: Lines
) -> None:
    path = write(tmp_path / "run.jsonl", exported)
    with open_store(tmp_path / "b.db") as store:
        first = import_run(store, path)
        with pytest.raises(DuplicateRun) as caught:
            import_run(store, path)
        assert str(caught.value) == (
            f"run {first.id} already holds this run (same origin: host, pid, start time, name, "
            "rank); use --as-new to import a copy"
        )
        assert len(store.list_runs()) == 1
        copy_ = import_run(store, path, as_new=True)
        assert copy_.id != first.id and store.flow(copy_.id, 0) == store.flow(first.id, 0)
        # another rank of the same job is another run
        other = copy.deepcopy(exported)
        other[1]["rank"] = 1
        assert import_run(store, write(tmp_path / "rank1.jsonl", other)).rank == 1


def test_import_validation_running_run_comes_in_interrupted(
    tmp_path: Path, exported: Lines
) -> None:
    lines = copy.deepcopy(exported)
    lines[1].update(status="running", finished_at=None)
    with open_store(tmp_path / "b.db") as store:
        run = import_run(store, write(tmp_path / "run.jsonl", lines))
        assert (run.status, run.steps) == ("interrupted", 2)


def test_import_validation_minimal_hand_written_file(tmp_path: Path) -> None:
    lines: Lines = [
        {"format": "layer-tracer-run", "version": 1},
        {"type": "run", "name": "hand", "status": "completed", "started_at": 1, "updated_at": 2},
        {"type": "metrics", "step": 0, "values": {"loss": "Infinity"}},
    ]
    with open_store(tmp_path / "b.db") as store:
        run = import_run(store, write(tmp_path / "run.jsonl", lines))
        assert (run.rank, run.world_size, run.steps, dict(run.config)) == (0, 1, 0, {})
        assert store.metrics(run.id)[0].value == math.inf
