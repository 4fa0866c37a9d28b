"""``tracer`` as a real process on hostile databases: markup and control characters in every
user string, huge strings written past the API, closed pipes, SIGTERM, empty matches."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_process import stop_a_long_run, tracer

from tracer.records import CallRecord, ModuleRecord, TensorRecord, literal
from tracer.store import open_store

ROOT = Path(__file__).parents[2]
TINY_PLUGIN = ROOT / "tests" / "plugins" / "tiny_plugin.py"

#: Markup, terminal escapes (colour, bell, carriage return, newline), DEL and a C1 control.
HOSTILE = "[b]art[/b][red]x\x1b[31m\x07\r\n\x7f\x9b|"
RAW = ("\x1b", "\x07", "\r", "\x7f", "\x9b")


def tensor(slot: str, shape: tuple[int, ...], role: str = "output", **stats: float) -> TensorRecord:
    """A float32 cpu tensor record."""
    base = {"numel": float(math.prod(shape)), "mean": 0.5, "std": 1.0}
    base.update(stats)
    return TensorRecord(slot, shape, "float32", "cpu", role=role, stats=base)  # type: ignore[arg-type]


def modules(hidden: int) -> list[ModuleRecord]:
    """A root with an encoder (the module whose path turns hostile) and a head."""
    enc, head = 8 * hidden, hidden + 1
    return [
        ModuleRecord("", "Net", None, 0, 0, enc + head, 0, enc + head),
        ModuleRecord("encoder", "Linear", "", 1, enc, enc, enc, enc),
        ModuleRecord("head", "Linear", "", 1, head, head, head, head),
    ]


def calls(step: int, hidden: int, grads: bool = False) -> list[CallRecord]:
    """Root, encoder (with a second output slot), head; gradients when asked."""
    x = tensor("0", (4, 8), role="input")
    enc_out = (tensor("0", (4, hidden)), tensor("extra", (4,)))
    enc_grads = ()
    if grads:
        enc_grads = (
            tensor("0", (4, hidden), role="grad"),
            tensor("weight", (hidden, 8), role="param_grad"),
            tensor("bias", (hidden,), role="param_grad"),
        )
    return [
        CallRecord(step, 0, "", "Net", inputs=(x,), outputs=(tensor("0", (4, 1)),)),
        CallRecord(
            step, 1, "encoder", "Linear", inputs=(x,), outputs=enc_out, grads=enc_grads, depth=1
        ),
        CallRecord(
            step,
            2,
            "head",
            "Linear",
            inputs=(tensor("0", (4, hidden), role="input"),),
            outputs=(tensor("0", (4, 1)),),
            depth=1,
        ),
    ]


def record(
    db: Path,
    name: str,
    *,
    hidden: int = 16,
    steps: int = 2,
    grads: bool = False,
    metrics: dict[str, float] | None = None,
    config: dict[str, object] | None = None,
) -> int:
    """A completed run written through the store's writer; returns its id."""
    store = open_store(db)
    try:
        run = store.create_run(name=name, pipeline="hand", config=config or {"hidden": hidden})
        writer = store.writer(run.id)
        writer.begin(modules(hidden), [])
        for step in range(steps):
            writer.write_step(step, calls(step, hidden, grads))
            writer.write_metrics(step, metrics if metrics is not None else {"loss": 0.5})
        writer.end("completed", None)
        return run.id
    finally:
        store.close()


def poison(db: Path, run_id: int, text: str) -> None:
    """Write ``text`` straight into the file (past any check of the API): the run's name,
    pipeline, config key and value, a metric name, a module path and a tensor slot."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE runs SET name = ?, pipeline = ?, config = ?, last_metrics = ? WHERE id = ?",
            (
                text,
                text,
                json.dumps({text: text, "hidden": 16}),
                json.dumps({text: 0.25}),
                run_id,
            ),
        )
        conn.execute("UPDATE metrics SET name = ? WHERE run_id = ?", (text, run_id))
        for table in ("calls", "modules"):
            column = "module" if table == "calls" else "path"
            conn.execute(
                f"UPDATE {table} SET {column} = ? WHERE run_id = ? AND {column} = 'encoder'",
                (text, run_id),
            )
        conn.execute(
            "UPDATE tensors SET slot = ? WHERE run_id = ? AND slot = 'extra'", (text, run_id)
        )


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    """Run 1 with every user string hostile, run 2 a plain one to compare with."""
    db = tmp_path / "hostile.db"
    poison(db, record(db, "to be replaced"), HOSTILE)
    record(db, "plain", hidden=32)
    return db


def assert_literal(result: subprocess.CompletedProcess, *texts: str) -> None:
    """Exit 0, each text shown literally, no raw control character on either stream."""
    assert result.returncode == 0, result.stderr
    for text in texts:
        assert text in result.stdout
    for raw in RAW:
        assert raw not in result.stdout and raw not in result.stderr


def test_cli_runs_shows_names_metrics_and_pipelines_literally(hostile_db: Path) -> None:
    result = tracer("runs", "--db", hostile_db, cwd=hostile_db.parent)
    assert_literal(result, literal(HOSTILE))
    header = result.stdout.splitlines()[0]
    assert literal(HOSTILE) in header  # the metric named HOSTILE is a column of its own
    assert "art" in header and "[b]art[/b]" in result.stdout


def test_cli_show_shows_the_run_and_module_paths_literally(hostile_db: Path) -> None:
    result = tracer("show", "1", "--db", hostile_db, cwd=hostile_db.parent)
    assert_literal(result, f"run 1 {literal(HOSTILE)}", f"  {literal(HOSTILE)}", "Linear")
    assert f"{literal(HOSTILE)}: (4,)" in result.stdout  # the output slot named HOSTILE


def test_cli_diff_shows_config_and_paths_literally(hostile_db: Path) -> None:
    result = tracer("diff", "1", "2", "--db", hostile_db, cwd=hostile_db.parent)
    assert_literal(result, f"({literal(HOSTILE)})", literal(HOSTILE), repr(HOSTILE))
    # the renamed module is removed on one side, added on the other: a real change
    assert "1 added, 1 removed" in result.stdout


def test_cli_errors_show_user_strings_literally(hostile_db: Path) -> None:
    missing = tracer("show", "no " + HOSTILE, "--db", hostile_db, cwd=hostile_db.parent)
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr
    for raw in RAW:
        assert raw not in missing.stderr
    step = tracer("show", "1", "--step", "7", "--db", hostile_db, cwd=hostile_db.parent)
    assert step.returncode == 1
    assert step.stderr.strip() == "Error: run 1 has no traced step 7 (traced: 0, 1)"
    diff = tracer("diff", "1", "2", "--step", "9", "--db", hostile_db, cwd=hostile_db.parent)
    assert diff.returncode == 1
    assert diff.stderr.strip() == (
        f"Error: run 1 ({literal(HOSTILE)}) has no traced step 9 (traced: 0, 1)"
    )


def test_cli_rm_prompt_and_export_name_runs_literally(hostile_db: Path) -> None:
    where = hostile_db.parent
    exported = tracer("export", "1", "-o", where / "one.json", "--db", hostile_db, cwd=where)
    assert_literal(exported, f"run 1 ({literal(HOSTILE)}) written to")
    imported = tracer("import", where / "one.json", "--db", where / "other.db", cwd=where)
    assert_literal(imported, f"imported as run 1 ({literal(HOSTILE)})")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    asked = subprocess.run(
        [sys.executable, "-m", "tracer", "rm", "1", "--db", str(hostile_db)],
        input="n\n",
        capture_output=True,
        text=True,
        cwd=where,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert asked.returncode == 1  # declined: nothing deleted
    assert f"delete run 1 ({literal(HOSTILE)})?" in asked.stdout + asked.stderr
    for raw in RAW:
        assert raw not in asked.stdout + asked.stderr


def test_cli_json_keeps_every_character(hostile_db: Path) -> None:
    result = tracer("runs", "--db", hostile_db, "--format", "json", cwd=hostile_db.parent)
    assert result.returncode == 0
    runs = {r["id"]: r for r in json.loads(result.stdout)}
    assert runs[1]["name"] == HOSTILE and runs[1]["config"][HOSTILE] == HOSTILE


def long_name_db(tmp_path: Path, size: int = 100_000) -> tuple[Path, str]:
    """Two runs, the first renamed to ``size`` characters straight in the file."""
    db = tmp_path / "long.db"
    first = record(db, "first")
    record(db, "second")
    name = ("n" * 99 + " ") * (size // 100)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET name = ? WHERE id = ?", (name, first))
    return db, name


@pytest.mark.parametrize("args", [["runs"], ["show", "1"], ["diff", "1", "2"]])
def test_cli_readers_stay_fast_with_a_100kb_name(tmp_path: Path, args: list[str]) -> None:
    db, _ = long_name_db(tmp_path)
    start = time.monotonic()
    result = tracer(*args, "--db", db, cwd=tmp_path, timeout=60)
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert took < 5, f"{args} took {took:.1f} s"  # a minute before cells were cut
    assert "…" in result.stdout  # cut with an ellipsis, not wrapped over a thousand lines
    assert len(result.stdout) < 20_000


def test_cli_error_naming_a_100kb_run_is_one_short_line(tmp_path: Path) -> None:
    db, _ = long_name_db(tmp_path)
    result = tracer("diff", "1", "2", "--step", "9", "--db", db, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and len(result.stderr) < 600
    assert result.stderr.startswith("Error: run 1 (nnnn") and "…" in result.stderr


def test_cli_json_keeps_a_100kb_name_whole(tmp_path: Path) -> None:
    db, name = long_name_db(tmp_path)
    result = tracer("show", "1", "--db", db, "--format", "json", cwd=tmp_path, timeout=60)
    assert json.loads(result.stdout)["run"]["name"] == name


def test_cli_runs_shows_the_metric_columns_the_runs_have(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    record(db, "a", metrics={"loss": 0.5, "f1": 0.75})
    record(db, "b", metrics={"loss": 0.25})
    header = tracer("runs", "--db", db, cwd=tmp_path).stdout.splitlines()[0].split()
    assert header[-2:] == ["loss", "f1"]
    for never_logged in ("accuracy", "val_acc", "test_acc"):
        assert never_logged not in header
    many = {f"m{i}": float(i) for i in range(8)}
    record(db, "c", metrics=many)
    shown = tracer("runs", "--db", db, cwd=tmp_path).stdout.splitlines()
    # the usual ones first, then in the order first seen (newest run first)
    assert shown[0].split()[-6:] == ["loss", "m0", "m1", "m2", "m3", "m4"]
    assert shown[-1] == "4 more metrics: --format json"


@pytest.mark.parametrize(
    "args", [["runs"], ["runs", "--format", "json"], ["show", "1"], ["diff", "1", "2"]]
)
def test_cli_closed_pipe_exits_quietly(hostile_db: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tracer", *args, "--db", str(hostile_db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=hostile_db.parent,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the first line (``| head -0``)
    _, stderr = process.communicate(timeout=120)
    assert stderr == b""
    assert process.returncode == 141  # 128 + SIGPIPE, what a shell reports for ``yes | head``


def test_cli_show_layer_without_a_match_names_close_paths(hostile_db: Path) -> None:
    result = tracer("show", "2", "--layer", "haed*", "--db", hostile_db, cwd=hostile_db.parent)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: no layer matches 'haed*'; close: head"
    assert result.stdout == ""
    far = tracer("show", "2", "--layer", "zzz", "--db", hostile_db, cwd=hostile_db.parent)
    assert far.returncode == 1
    assert far.stderr.strip() == "Error: no layer matches 'zzz'; layers: <root>, encoder, head"


def test_cli_diff_of_runs_with_nothing_in_common_says_so(tmp_path: Path) -> None:
    db = tmp_path / "apart.db"
    record(db, "one")
    store = open_store(db)
    other = store.create_run(name="other", pipeline="hand")
    writer = store.writer(other.id)
    writer.begin([ModuleRecord("", "Other", None, 0, 0, 0, 0, 0)], [])
    writer.write_step(0, [CallRecord(0, 0, "", "Other", outputs=(tensor("0", (2,)),))])
    writer.end("completed", None)
    empty = store.create_run(name="empty", pipeline="hand")
    store.writer(empty.id).end("completed", None)
    store.close()
    apart = tracer("diff", "1", "2", "--db", db, "--exit-code", cwd=tmp_path)
    assert apart.returncode == 1
    assert "nothing in common" in apart.stdout
    none = tracer("diff", "1", "3", "--db", db, cwd=tmp_path)
    assert none.returncode == 0
    assert "nothing to compare: run B has no traced steps" in none.stdout


def test_cli_json_output_is_strict_with_non_finite_numbers(tmp_path: Path) -> None:
    db = tmp_path / "nan.db"
    record(db, "nan", metrics={"loss": math.nan, "acc": math.inf})
    record(db, "other", hidden=32)

    def strict(text: str) -> object:
        def refuse(token: str) -> object:
            raise AssertionError(f"non-standard JSON number {token}")

        return json.loads(text, parse_constant=refuse)

    for args in (["runs"], ["show", "1"], ["diff", "1", "2", "--drift"]):
        result = tracer(*args, "--db", db, "--format", "json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        strict(result.stdout)
    runs = tracer("runs", "--db", db, cwd=tmp_path)
    assert "nan" in runs.stdout and "inf" in runs.stdout


def test_cli_sigterm_stops_a_run_like_ctrl_c(tmp_path: Path) -> None:
    returncode, stderr = stop_a_long_run(tmp_path, signal.SIGTERM, TINY_PLUGIN)
    assert returncode == 143, stderr  # 128 + SIGTERM: stopped, and by whom
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted: the steps recorded so far are kept"
    store = open_store(tmp_path / "t.db")
    try:
        run = store.list_runs()[0]
    finally:
        store.close()
    assert run.status == "interrupted"
    assert run.steps >= 3


def test_cli_diff_exit_code_ignores_gradients_one_run_never_recorded(tmp_path: Path) -> None:
    db = tmp_path / "grads.db"
    record(db, "with grads", grads=True)
    record(db, "without")
    result = tracer("diff", "1", "2", "--db", db, "--exit-code", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "0 changed, 0 added, 0 removed, 3 same" in result.stdout
    assert "not recorded in B: grad, param_grad (not compared)" in result.stdout
    assert "param_grad weight" not in result.stdout
    doc = json.loads(tracer("diff", "1", "2", "--db", db, "--format", "json", cwd=tmp_path).stdout)
    assert doc["unrecorded"] == {"a": [], "b": ["grad", "param_grad"]}
    assert doc["structural"] is False
    bigger = record(db, "bigger", hidden=32)
    changed = tracer("diff", "2", bigger, "--db", db, "--exit-code", cwd=tmp_path)
    assert changed.returncode == 1  # a real shape change still fails the contract


def test_summary_prints_module_names_and_slots_literally(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch
    from torch import nn

    import tracer

    class Split(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {HOSTILE: x, "plain": x * 2}

    model = nn.Sequential()
    model.add_module(HOSTILE.replace(".", ""), nn.Linear(3, 2))
    model.add_module("split", Split())
    result = tracer.summary(model, torch.zeros(1, 3))
    printed = capsys.readouterr().out
    for text in (str(result), printed):
        assert literal(HOSTILE) in text  # the module's name and the output slot
        for raw in RAW:
            assert raw not in text
