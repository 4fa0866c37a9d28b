"""Column limits: every backend refuses what PostgreSQL would, with the field, size and limit.

Each case runs on a SQLite file and on PostgreSQL (``db_url``): a value SQLite accepted and
PostgreSQL refused would make a run recorded on SQLite impossible to import.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine
from store_records import sample_flow, sample_modules, tensor
from torch import nn

import tracer
from tracer.records import CallRecord
from tracer.store import StoreError, open_store
from tracer.store.errors import LimitError
from tracer.store.limits import LIMITS
from tracer.store.migrate import upgrade_to


def test_limits_come_from_the_column_types() -> None:
    assert LIMITS["runs"]["name"].max_chars == 200
    assert LIMITS["metrics"]["name"].max_chars == 200
    assert LIMITS["extra_stats"]["name"].max_chars == 100
    assert LIMITS["runs"]["seed"].int_range == (-(2**63), 2**63 - 1)
    assert LIMITS["metrics"]["step"].int_range == (-(2**31), 2**31 - 1)
    assert LIMITS["runs"]["config"].max_chars == 1_000_000  # a Text column's cap (info)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "n" * 201}, r"run name 'n{40}…' is 201 characters long; the limit is 200"),
        ({"name": "a\x00b"}, r"run name 'a\\x00b' contains a NUL character"),
        ({"name": "bad \ud800"}, r"run name .* is not valid Unicode text"),
        ({"pipeline": "p" * 201}, r"pipeline name .* 201 characters long; the limit is 200"),
        ({"seed": 2**63}, r"seed 9223372036854775808 is outside the range .*854,775,807"),
        ({"seed": -(2**63) - 1}, r"seed -9223372036854775809 is outside the range"),
        ({"device": "d" * 101}, r"device .* the limit is 100"),
        ({"group_id": "g" * 201}, r"group id .* the limit is 200"),
        ({"tags": {"k" * 201: "v"}}, r"tags key .* the limit is 200"),
        ({"tags": {"data": "v" * 4097}}, r"tags value of 'data' is 4,097 characters long"),
        ({"config": {"text": "c" * 100_001}}, r"config value of 'text' is 100,00[0-9] char"),
        (
            {"config": {f"k{i}": "c" * 90_000 for i in range(12)}},
            r"config is 1,08[0-9,]+ characters long as JSON; the limit is 1,000,000",
        ),
        ({"command": "x" * 100_001}, r"command line .* the limit is 100,000"),
    ],
)
def test_create_run_refuses_a_value_over_its_limit_before_creating_the_run(
    db_url: str, kwargs: dict[str, object], message: str
) -> None:
    with open_store(db_url) as store:
        with pytest.raises(LimitError, match=message):
            store.create_run(**{"name": "ok", **kwargs})  # type: ignore[arg-type]
        assert store.list_runs() == []


def test_create_run_accepts_values_at_their_limits(db_url: str) -> None:
    with open_store(db_url) as store:
        run = store.create_run(
            name="n" * 200,
            pipeline="p" * 200,
            seed=2**63 - 1,
            tags={"k" * 200: "v" * 4096},
            config={"text": "c" * 99_990, "unicode": "é✓"},
            group_id="g" * 200,
        )
        got = store.get_run(run.id)
    assert (got.name, got.seed, len(got.config["text"])) == ("n" * 200, 2**63 - 1, 99_990)


def _call(step: int, **overrides: object) -> CallRecord:
    return dataclasses.replace(sample_flow(step)[0], **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        (lambda: [_call(1, type="T" * 201)], r"module type .* the limit is 200"),
        (lambda: [_call(1, op="o" * 101)], r"calls.op .* the limit is 100"),
        (lambda: [_call(1, module="a\x00")], r"module path 'a\\x00' contains a NUL"),
        (lambda: [_call(1, outputs=(tensor("s" * 10_001),))], r"tensor slot .* limit is 10,000"),
    ],
)
def test_write_step_refuses_a_record_over_its_limit_and_keeps_earlier_steps(
    db_url: str, calls: object, message: str
) -> None:
    with open_store(db_url) as store:
        run = store.create_run(name="r")
        writer = store.writer(run.id)
        writer.begin(sample_modules(), [])
        writer.write_step(0, sample_flow(0), {"loss": 1.0})
        with pytest.raises(LimitError, match=message):
            writer.write_step(1, calls(), {"loss": 0.5})  # type: ignore[operator]
        assert store.steps(run.id) == [0]
        assert [m.step for m in store.metrics(run.id)] == [0]


def test_write_step_refuses_a_statistic_name_over_its_limit(db_url: str) -> None:
    long_stat = tensor("0", **{"s" * 101: 1.0})
    with open_store(db_url) as store:
        run = store.create_run(name="r")
        writer = store.writer(run.id)
        with pytest.raises(LimitError, match=r"statistic name 's{40}…' is 101 characters"):
            writer.write_step(0, [_call(0, outputs=(long_stat,))])
        assert store.steps(run.id) == []


def test_write_metrics_refuses_a_long_name_and_a_step_out_of_range(db_url: str) -> None:
    with open_store(db_url) as store:
        run = store.create_run(name="r")
        writer = store.writer(run.id)
        writer.write_metrics(0, {"m" * 200: 1.0})
        with pytest.raises(LimitError, match=r"metric name 'm{40}…' is 300 characters long"):
            writer.write_metrics(1, {"m" * 300: 1.0})
        with pytest.raises(LimitError, match=r"step 2147483648 is outside the range"):
            writer.write_metrics(2**31, {"loss": 1.0})
        assert [(m.step, m.name) for m in store.metrics(run.id)] == [(0, "m" * 200)]


def test_begin_stores_a_model_past_two_billion_parameters(db_url: str) -> None:
    big = dataclasses.replace(sample_modules()[0], params_total=3 * 10**9, trainable_total=2**40)
    with open_store(db_url) as store:
        writer = store.writer(store.create_run(name="r").id)
        writer.begin([big], [])
        (got,) = store.module_tree(writer.run_id)
        assert (got.params_total, got.trainable_total) == (3 * 10**9, 2**40)
        huge = dataclasses.replace(big, params_total=2**63)
        with pytest.raises(
            LimitError, match=r"modules.params_total 9223372036854775808 is outside"
        ):
            writer.begin([huge], [])
        assert store.module_tree(writer.run_id) == [got]  # the module table is kept


@pytest.mark.postgres
def test_upgrade_widens_parameter_counts_on_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    upgrade_to(engine, "0002")
    engine.dispose()
    with open_store(postgres_url) as store:
        writer = store.writer(store.create_run(name="r").id)
        writer.begin([dataclasses.replace(sample_modules()[0], params_total=3 * 10**9)], [])
        assert store.module_tree(writer.run_id)[0].params_total == 3 * 10**9


def test_a_long_metric_name_mid_training_fails_the_run_and_keeps_earlier_steps(
    db_url: str,
) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    long_name = r"metric name 'x{40}…' is 300 characters long"
    with (
        pytest.raises(StoreError, match=long_name),
        tracer.trace(net, store=db_url, name="long-metric") as t,
    ):
        for i in range(4):
            net(torch.randn(5, 4)).sum().backward()
            t.log(loss=float(i))
            if i == 2:
                t.log(**{"x" * 300: 1.0})
            t.step()
    with open_store(db_url) as store:
        (run,) = store.list_runs()
        assert run.status == "failed"
        assert "300 characters long" in (run.error or "")
        assert store.steps(run.id) == [0, 1]
        assert [m.value for m in store.metrics(run.id)] == [0.0, 1.0]


def test_finish_run_records_any_error_text(db_url: str) -> None:
    with open_store(db_url) as store:
        run = store.create_run(name="r")
        store.finish_run(run.id, "failed", "bad \x00 byte " + "e" * 200_000)
        error = store.get_run(run.id).error or ""
    assert error.startswith("bad \\x00 byte ") and len(error) == 100_000 and error[-1] == "…"


@pytest.mark.postgres
def test_a_run_at_every_limit_recorded_on_sqlite_imports_into_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    with open_store(tmp_path / "s.db") as sqlite:
        run = sqlite.create_run(
            name="n" * 200, seed=-(2**31), tags={"t" * 200: "v" * 4096}, config={"c": "é" * 9}
        )
        writer = sqlite.writer(run.id)
        writer.begin(sample_modules(), ["note"])
        writer.write_step(0, [_call(0, type="T" * 200, op="o" * 100)], {"m" * 200: 1.0})
        writer.end("completed")
        sqlite.export_run(run.id, tmp_path / "run.jsonl")
    with open_store(postgres_url) as pg:
        got = pg.import_run(tmp_path / "run.jsonl")
        assert got.name == "n" * 200 and pg.steps(got.id) == [0]
        assert pg.metrics(got.id)[0].name == "m" * 200


def test_tracer_run_with_a_long_name_is_one_line_and_creates_no_run(
    db_url: str, tmp_path: Path
) -> None:
    plugin = Path(__file__).parents[1] / "plugins" / "tiny_plugin.py"
    tracer_command = Path(sys.executable).with_name("tracer")
    done = subprocess.run(
        [tracer_command, "run", "tiny", "--plugin", plugin, "--db", db_url, "--name", "n" * 300],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: run name {'n' * 40!r}"[:-1] + "…' is 300 characters long; the limit is 200 "
        "(runs.name)"
    ], done.stderr
    with open_store(db_url) as store:
        assert store.list_runs() == []
