"""The ``tracer`` commands through click's runner: plugins, run outcomes, export, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

COMMANDS = [
    "run",
    "pipelines",
    "plugins",
    "runs",
    "show",
    "diff",
    "export",
    "import",
    "rm",
    "data",
    "tui",
]


@pytest.mark.parametrize("command", [*COMMANDS, "data download"])
def test_cli_every_command_has_help(tracer_cli, command: str) -> None:
    result = tracer_cli(*command.split(), "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_cli_help_lists_every_command(tracer_cli) -> None:
    result = tracer_cli("--help")
    for command in COMMANDS:
        assert f"  {command} " in result.output


def test_cli_pipelines_shows_config_keys_defaults_and_help(tracer_cli) -> None:
    result = tracer_cli("pipelines")
    assert result.exit_code == 0
    assert "sentiment" in result.stdout and "plugin: sentiment" in result.stdout
    assert "hidden_dim" in result.stdout and "LSTM hidden size" in result.stdout
    doc = json.loads(tracer_cli("pipelines", "--format", "json").stdout)
    keys = {c["key"]: c["default"] for c in doc[0]["config"]}
    assert keys["batch_size"] == 50 and keys["seq_length"] == 200 and keys["embedding_dim"] == 30


def test_cli_plugins_lists_sources_hooks_and_contributions(tracer_cli, tiny_plugin) -> None:
    doc = json.loads(tracer_cli("plugins", "--plugin", tiny_plugin, "--format", "json").stdout)
    by_name = {p["name"]: p for p in doc}
    assert by_name["sentiment"]["source"] == "built-in"
    assert by_name["tiny_plugin"]["source"] == str(tiny_plugin)
    assert "pipeline tiny" in by_name["tiny_plugin"]["contributes"]
    assert "exporter txt" in by_name["tiny_plugin"]["contributes"]
    table = tracer_cli("plugins").stdout
    assert "exporters" in table and "exporter csv" in table


def test_cli_run_plugin_pipeline_prints_summary_and_run_id(tracer_cli, run_tiny) -> None:
    result = run_tiny("--set", "steps=3", "--name", "first", "--every", "1")
    assert result.exit_code == 0, result.output
    assert "run id: 1" in result.stdout and "completed" in result.stdout
    assert "final" in result.stdout
    runs = json.loads(tracer_cli("runs", "--db", "t.db", "--format", "json").stdout)
    assert runs[0]["name"] == "first" and runs[0]["steps"] == 3


def test_cli_run_reads_a_toml_config(tracer_cli, run_tiny, tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[tiny]\nsteps = 2\nwidth = 3\n")
    result = run_tiny("--config", "c.toml", "--set", "width=5")
    assert result.exit_code == 0, result.output
    run = json.loads(tracer_cli("runs", "--db", "t.db", "--format", "json").stdout)[0]
    assert (run["config"]["steps"], run["config"]["width"]) == (2, 5)


def test_cli_run_ctrl_c_marks_interrupted_and_exits_130(tracer_cli, run_tiny) -> None:
    result = run_tiny("--every", "1", "--set", "steps=5", "--set", "interrupt_at=2")
    assert result.exit_code == 130
    assert "interrupted" in result.output
    run = json.loads(tracer_cli("runs", "--db", "t.db", "--format", "json").stdout)[0]
    assert run["status"] == "interrupted" and run["steps"] == 2


def test_cli_run_failure_is_one_message_and_the_run_is_failed(tracer_cli, run_tiny) -> None:
    result = run_tiny("--set", "fail_at=1", "--every", "1")
    assert result.exit_code == 1
    assert "boom at step 1" in result.output and "Traceback" not in result.output
    run = json.loads(tracer_cli("runs", "--db", "t.db", "--format", "json").stdout)[0]
    assert run["status"] == "failed" and run["steps"] == 1


def test_cli_debug_shows_the_traceback(run_tiny) -> None:
    with pytest.raises(Exception, match="boom at step 0"):
        run_tiny("--set", "fail_at=0", "--debug")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "unknown pipeline 'nope'; available: sentiment"),
        (["run", "sentiment", "--set", "hiden_dim=3"], "unknown config key 'hiden_dim'"),
        (["run", "sentiment", "--set", "hidden_dim=big"], "expected int"),
        (["run", "sentiment", "--set", "hidden_dim"], "expected key=value"),
        (["run", "sentiment", "--plugin", "missing.py"], "plugin file missing.py does not exist"),
        (["run", "sentiment", "--device", "warp"], "unknown device 'warp'"),
        (["runs"], "no database at ./tracer.db"),
        (["show", "1", "--db", "none.db"], "no database at none.db"),
    ],
)
def test_cli_user_errors_are_one_clear_line(tracer_cli, args: list[str], message: str) -> None:
    result = tracer_cli(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_plugin_that_fails_to_import_is_a_clear_error(tracer_cli, tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("raise RuntimeError('cannot start')\n")
    result = tracer_cli("pipelines", "--plugin", "bad.py")
    assert result.exit_code == 1
    assert "bad.py failed to import: RuntimeError: cannot start" in result.output


def test_cli_foreign_database_is_refused(tracer_cli, tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("these are my notes, not a database\n")
    result = tracer_cli("runs", "--db", "notes.db")
    assert result.exit_code == 1
    assert "notes.db" in result.output and "Traceback" not in result.output
    assert (tmp_path / "notes.db").read_text().startswith("these are my notes")


def test_cli_unknown_run_is_a_clear_error(tracer_cli, run_tiny) -> None:
    run_tiny()
    for args in (
        ["show", "42"],
        ["diff", "1", "nope"],
        ["rm", "7", "--yes"],
        ["export", "9", "-o", "x.json"],
    ):
        result = tracer_cli(*args, "--db", "t.db")
        assert result.exit_code == 1, args
        assert "no run" in result.output, result.output


def test_cli_export_import_and_rm(tracer_cli, run_tiny) -> None:
    assert run_tiny("--every", "1", "--name", "moved", db="a.db").exit_code == 0
    exported = tracer_cli("export", "moved", "--db", "a.db", "-o", "run.json")
    assert exported.exit_code == 0, exported.output
    imported = tracer_cli("import", "run.json", "--db", "b.db")
    assert imported.exit_code == 0, imported.output
    assert "imported as run 1 (moved)" in imported.stdout
    original = json.loads(tracer_cli("show", "moved", "--db", "a.db", "--format", "json").stdout)
    copy = json.loads(tracer_cli("show", "moved", "--db", "b.db", "--format", "json").stdout)
    assert copy["calls"] == original["calls"]
    removed = tracer_cli("rm", "moved", "--db", "b.db", "--yes")
    assert removed.exit_code == 0 and "deleted run 1 (moved)" in removed.stdout
    assert "no runs" in tracer_cli("runs", "--db", "b.db").stdout


def test_cli_rm_asks_for_confirmation(tracer_cli, run_tiny) -> None:
    run_tiny()
    kept = tracer_cli("rm", "1", "--db", "t.db", input="n\n")
    assert kept.exit_code == 1
    assert len(json.loads(tracer_cli("runs", "--db", "t.db", "--format", "json").stdout)) == 1


def test_cli_export_csv_and_plugin_formats(
    tracer_cli, run_tiny, tiny_plugin, tmp_path: Path
) -> None:
    run_tiny("--every", "1", "--set", "steps=2")
    assert tracer_cli("export", "1", "--db", "t.db", "-o", "flow.csv").exit_code == 0
    rows = list(csv.DictReader((tmp_path / "flow.csv").open()))
    assert {r["step"] for r in rows} == {"0", "1"}
    assert {"module", "role", "slot", "shape", "mean"} <= set(rows[0])
    assert any(r["module"] == "0" and r["shape"] == "(8, 4)" for r in rows)
    txt = tracer_cli(
        "export", "1", "--db", "t.db", "-o", "x.out", "--format", "txt", "--plugin", tiny_plugin
    )
    assert txt.exit_code == 0 and (tmp_path / "x.out").read_text() == "run 1: tiny"
    bad = tracer_cli("export", "1", "--db", "t.db", "-o", "x.out", "--format", "xml")
    assert bad.exit_code == 1 and "unknown format 'xml'; available: json, csv" in bad.output


def test_cli_disable_plugins_env_hides_a_pipeline(tracer_cli) -> None:
    result = tracer_cli("run", "sentiment", env={"TRACER_DISABLE_PLUGINS": "sentiment"})
    assert result.exit_code == 1
    assert "unknown pipeline 'sentiment'; available: none" in result.output


def test_cli_tui_without_a_database_says_so(tracer_cli) -> None:
    result = tracer_cli("tui", "--db", "missing.db")
    assert result.exit_code != 0
    assert "missing.db" in result.output
