"""``tracer show``, ``diff`` and ``runs`` on recorded sentiment runs (the issue's "done when")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ARTICLE_FLOW = [
    ("module", "embedding", "Embedding", [50, 200, 30]),
    ("module", "lstm", "LSTM", [50, 200, 512]),
    ("op", "", "view", [10000, 512]),
    ("module", "fc", "Linear", [10000, 1]),
    ("module", "sig", "Sigmoid", [10000, 1]),
    ("op", "", "view", [50, 200]),
    ("op", "", "getitem", [50]),
]

pytestmark = pytest.mark.slow  # two short training runs with the article's LSTM


def flow_of(tracer_cli, db: Path, ref: str, *extra: str) -> dict:
    result = tracer_cli("show", ref, "--db", db, "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_show_latest_lists_the_article_shape_flow(tracer_cli, two_runs: Path) -> None:
    doc = flow_of(tracer_cli, two_runs, "1")
    calls = [c for c in doc["calls"] if c["module"] != "" or c["kind"] == "op"]
    seen = [(c["kind"], c["module"], c["op"] or c["type"], c["outputs"][0]["shape"]) for c in calls]
    expected = [(k, m, op.split(".")[-1], s) for k, m, op, s in ARTICLE_FLOW]
    assert [(k, m, op.split(".")[-1].strip("_"), s) for k, m, op, s in seen] == expected
    lstm = next(c for c in doc["calls"] if c["module"] == "lstm" and c["kind"] == "module")
    assert {o["slot"]: o["shape"] for o in lstm["outputs"]} == {
        "0": [50, 200, 512],
        "1.0": [1, 50, 512],
        "1.1": [1, 50, 512],
    }
    assert doc["calls"][1]["inputs"][0]["dtype"] == "int64"
    assert doc["run"]["config"]["hidden_dim"] == 512


def test_cli_show_latest_is_the_newest_run(tracer_cli, two_runs: Path) -> None:
    assert flow_of(tracer_cli, two_runs, "latest")["run"]["name"] == "small"
    assert flow_of(tracer_cli, two_runs, "big")["run"]["id"] == 1


def test_cli_show_names_label_dimensions_with_config_keys(tracer_cli, two_runs: Path) -> None:
    result = tracer_cli("show", "big", "--db", two_runs, "--names")
    assert result.exit_code == 0, result.output
    assert "(batch_size, seq_length, hidden_dim)" in result.stdout
    assert "(batch_size, seq_length, embedding_dim)" in result.stdout
    doc = flow_of(tracer_cli, two_runs, "big", "--names", "--layer", "lstm")
    assert doc["calls"][0]["outputs"][1]["named_shape"] == "(1, batch_size, hidden_dim)"


def test_cli_show_layer_glob_and_step(tracer_cli, two_runs: Path) -> None:
    doc = flow_of(tracer_cli, two_runs, "1", "--layer", "[ef]*", "--step", "0")
    assert [c["name"] for c in doc["calls"]] == ["embedding", "fc"]
    ops = flow_of(tracer_cli, two_runs, "1", "--layer", "getitem")
    assert [c["name"] for c in ops["calls"]] == ["getitem"]
    missing = tracer_cli("show", "1", "--db", two_runs, "--step", "99")
    assert missing.exit_code == 1
    assert "no traced step 99 (traced: 0)" in missing.output


def test_cli_show_table_has_the_flow(tracer_cli, two_runs: Path) -> None:
    result = tracer_cli("show", "1", "--db", two_runs)
    assert result.exit_code == 0
    for text in ("(50, 200, 30)", "(50, 200, 512)", "(10000, 512)", "· getitem", "(50,)"):
        assert text in result.stdout


def test_cli_diff_marks_only_what_hidden_dim_changes(tracer_cli, two_runs: Path) -> None:
    result = tracer_cli("diff", "big", "small", "--db", two_runs, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    changed = {
        (r["name"], r["call_index"]): {(c["role"], c["slot"]) for c in r["changes"]}
        for r in doc["rows"]
        if r["status"] != "same"
    }
    assert changed == {  # ("module", ""): the module's own parameter count
        ("lstm", 0): {("output", "0"), ("output", "1.0"), ("output", "1.1"), ("module", "")},
        ("view", 0): {("input", "0"), ("output", "0")},
        ("fc", 0): {("input", "0"), ("module", "")},
    }
    assert [c["key"] for c in doc["config"]] == ["hidden_dim"]
    own = {p["module"] for p in doc["params"] if p["a_own"] != p["b_own"]}
    assert own == {"lstm", "fc"}


def test_cli_diff_table_and_exit_code(tracer_cli, two_runs: Path) -> None:
    result = tracer_cli("diff", "1", "2", "--db", two_runs, "--exit-code")
    assert result.exit_code == 1
    assert "hidden_dim" in result.stdout and "3 changed" in result.stdout
    assert "(50, 200, 512)" in result.stdout and "(50, 200, 256)" in result.stdout
    same = tracer_cli("diff", "1", "1", "--db", two_runs, "--exit-code")
    assert same.exit_code == 0
    assert "0 changed" in same.stdout


def test_cli_runs_lists_runs_with_filters(tracer_cli, two_runs: Path) -> None:
    table = tracer_cli("runs", "--db", two_runs)
    assert table.exit_code == 0
    assert "big" in table.stdout and "small" in table.stdout and "completed" in table.stdout
    doc = json.loads(tracer_cli("runs", "--db", two_runs, "--format", "json").stdout)
    assert [r["name"] for r in doc] == ["small", "big"]
    assert {"loss", "accuracy", "val_acc", "test_acc"} <= set(doc[0]["metrics"])
    only = json.loads(
        tracer_cli("runs", "--db", two_runs, "--name", "big", "--format", "json").stdout
    )
    assert [r["id"] for r in only] == [1]
    none = tracer_cli("runs", "--db", two_runs, "--status", "failed")
    assert "no runs" in none.stdout


def test_cli_db_comes_from_the_environment(tracer_cli, two_runs: Path) -> None:
    result = tracer_cli("runs", "--format", "json", env={"TRACER_DB": str(two_runs)})
    assert len(json.loads(result.stdout)) == 2
