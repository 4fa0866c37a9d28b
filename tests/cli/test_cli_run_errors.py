"""``tracer run`` as a real process: bad config values, options and files, hostile plugins."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_process import tracer

from tracer.store import open_store

ROOT = Path(__file__).parents[2]
TINY = ROOT / "tests" / "plugins" / "tiny_plugin.py"


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    """The lines of stderr from ``Error:`` on (progress and log lines come before)."""
    lines = done.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    assert starts, done.stderr
    return lines[starts[0] :]


def assert_clean_failure(done: subprocess.CompletedProcess, status: int = 1) -> str:
    """A non-zero exit with a one-line error (plus at most the --debug hint): returns it."""
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "frame #" not in done.stderr
    lines = error_lines(done)
    assert len(lines) == 1 or lines[1:] == ["(run with --debug for the traceback)"], lines
    return lines[0]


def runs_in(db: Path) -> list[tuple[int, str, str | None]]:
    """(id, status, error) of every run in the database."""
    with open_store(db) as store:
        return [(r.id, r.status, r.error) for r in store.list_runs()]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("epochs=-1", "epochs=-1 is out of range (allowed: 1 to 1000000)"),
        ("steps_per_epoch=0", "steps_per_epoch=0 is out of range (allowed: at least 1)"),
        ("max_reviews=0", "max_reviews=0 is out of range (allowed: 1 to 100000000)"),
        ("batch_size=0", "batch_size=0 is out of range (allowed: 1 to 1000000)"),
        ("hidden_dim=0", "hidden_dim=0 is out of range (allowed: 1 to 8192)"),
        ("hidden_dim=99999999999999999999", "hidden_dim=99999999999999999999 is out of range"),
        ("seed=9223372036854775808", "seed=9223372036854775808 is out of range (allowed: at"),
        ("lr=nan", "bad value nan for lr: expected a finite float"),
        ("drop_prob=1.5", "drop_prob=1.5 is out of range (allowed: 0.0 to 1.0)"),
    ],
)
def test_cli_run_errors_out_of_range_config_is_refused_before_a_run(
    tmp_path: Path, value: str, message: str
) -> None:
    done = tracer("run", "sentiment", "--set", value, cwd=tmp_path)
    assert assert_clean_failure(done).startswith(f"Error: {message}")
    assert not (tmp_path / "tracer.db").exists()  # refused before the database is even opened


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--every", "0", "0 is not in the range 1<=x<=9223372036854775807"),
        ("--seed", "-1", "-1 is not in the range 0<=x<=9223372036854775807"),
        ("--seed", str(2**64), "18446744073709551616 is not in the range 0<=x<="),
        ("--every", "lots", "'lots' is not a valid integer"),
    ],
)
def test_cli_run_errors_bad_run_options_are_refused_before_a_run(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    done = tracer("run", "sentiment", option, value, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Invalid value for '{option}': {message}" in done.stderr
    assert not (tmp_path / "tracer.db").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('epochs = "two"\n', "c.toml: bad value 'two' for epochs: expected int"),
        ("epochs = 1.5\n", "c.toml: bad value 1.5 for epochs: expected int"),
        ("[sentiment]\nepochs = [1]\n", "c.toml: bad value (an array) for epochs: expected int"),
        ("[tiny]\nsteps = 1\n", "c.toml: unknown table [tiny]; only a table named after the"),
        ("[sentiment.model]\nwidth = 1\n", "c.toml: unknown table [model]"),
        ("colour = 1\n", "c.toml: unknown config key 'colour'; valid keys: data_dir"),
        ("epochs = 0\n", "c.toml: epochs=0 is out of range (allowed: 1 to 1000000)"),
        ("epochs = \n", "is not valid TOML"),
    ],
)
def test_cli_run_errors_bad_toml_config_is_refused_before_a_run(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "c.toml").write_text(text, encoding="utf-8")
    done = tracer("run", "sentiment", "--config", "c.toml", cwd=tmp_path)
    assert message in assert_clean_failure(done)
    assert not (tmp_path / "tracer.db").exists()


HOSTILE = """
import sys
from dataclasses import dataclass, field
from tracer import hookimpl
from tracer.plugins.pipeline import Pipeline


@dataclass
class C:
    steps: int = field(default=2, metadata={"help": "steps"})


def model(config):
    from torch import nn
    return nn.Linear(3, 1)


def data(config):
    import torch
    return torch.randn(4, 3)


def train(model, data, config, ctx):
    for i in range(config.steps):
        model(data).sum().backward()
        ctx.step({"i": i})
    WHAT_TRAIN
    return {}


@hookimpl
def register_pipelines(register):
    register(Pipeline("hostile", "misbehaves", C, data, model, train))
"""


def hostile(tmp_path: Path, train: str = "pass", extra: str = "") -> Path:
    """The hostile pipeline's plugin file: ``train`` runs after the steps, ``extra`` appended."""
    path = tmp_path / "hostile.py"
    path.write_text(HOSTILE.replace("WHAT_TRAIN", train) + extra, encoding="utf-8")
    return path


def test_cli_run_errors_cpp_error_in_training_is_one_line_and_fails_the_run(
    tmp_path: Path,
) -> None:
    plugin = hostile(tmp_path, train="import torch; torch.empty(2**64)")
    done = tracer("run", "hostile", "--plugin", plugin, "--every", "1", cwd=tmp_path)
    line = assert_clean_failure(done)
    assert line.startswith(
        "Error: run 1 (hostile) failed: pipeline 'hostile' (plugin 'hostile') failed in train: "
        "TypeError: empty(): argument 'size' failed to unpack"
    )
    [(_, status, error)] = runs_in(tmp_path / "tracer.db")
    assert status == "failed" and "frame #" not in (error or "") and "\n" not in (error or "")


def test_cli_run_errors_after_run_failure_names_the_plugin_and_keeps_the_run(
    tmp_path: Path,
) -> None:
    plugin = hostile(
        tmp_path, extra="\n@hookimpl\ndef after_run(run):\n    raise ValueError('no report')\n"
    )
    done = tracer("run", "hostile", "--plugin", plugin, "--every", "1", cwd=tmp_path)
    line = assert_clean_failure(done)
    assert line == (
        "Error: plugin 'hostile' failed in after_run: ValueError: no report "
        "(run 1 (hostile) itself completed; it is kept)"
    )
    assert "steps" in done.stdout  # the finished run's summary is still shown
    assert runs_in(tmp_path / "tracer.db") == [(1, "completed", None)]


@pytest.mark.parametrize("hook", ["before_run", "after_step"])
def test_cli_run_errors_hook_calling_sys_exit_zero_fails_the_run_naming_the_plugin(
    tmp_path: Path, hook: str
) -> None:
    args = "run" if hook == "before_run" else "run, step"
    extra = f"\n@hookimpl\ndef {hook}({args}):\n    sys.exit(0)\n"
    done = tracer("run", "hostile", "--plugin", hostile(tmp_path, extra=extra), cwd=tmp_path)
    line = assert_clean_failure(done)
    assert line.startswith(
        f"Error: run 1 (hostile) failed: plugin 'hostile' failed in {hook}: called sys.exit(0)"
    )
    [(_, status, error)] = runs_in(tmp_path / "tracer.db")
    assert status == "failed" and f"failed in {hook}: called sys.exit(0)" in (error or "")


def test_cli_run_errors_train_calling_sys_exit_fails_the_run(tmp_path: Path) -> None:
    done = tracer("run", "hostile", "--plugin", hostile(tmp_path, "sys.exit(0)"), cwd=tmp_path)
    line = assert_clean_failure(done)
    assert "pipeline 'hostile' (plugin 'hostile') failed in train: called sys.exit(0)" in line
    assert [r[1] for r in runs_in(tmp_path / "tracer.db")] == ["failed"]


def test_cli_run_errors_plugin_calling_sys_exit_at_import_is_named(tmp_path: Path) -> None:
    plugin = tmp_path / "quitter.py"
    plugin.write_text("import sys\nsys.exit(0)\n", encoding="utf-8")
    done = tracer("run", "sentiment", "--plugin", plugin, cwd=tmp_path)
    line = assert_clean_failure(done)
    assert line == f"Error: plugin file {plugin} failed to import: called sys.exit(0)"
    assert not (tmp_path / "tracer.db").exists()


def test_cli_run_errors_on_run_error_failure_is_reported_with_the_run_error(
    tmp_path: Path,
) -> None:
    extra = "\n@hookimpl\ndef on_run_error(run, error):\n    raise KeyError('gone')\n"
    plugin = hostile(tmp_path, "raise RuntimeError('train broke')", extra)
    done = tracer("run", "hostile", "--plugin", plugin, cwd=tmp_path)
    line = assert_clean_failure(done)
    assert "failed in train: RuntimeError: train broke" in line
    assert "also plugin 'hostile' failed in on_run_error: KeyError: 'gone'" in line
    assert [r[1] for r in runs_in(tmp_path / "tracer.db")] == ["failed"]


def test_cli_run_errors_statistic_clash_leaves_no_run(tmp_path: Path) -> None:
    clash = tmp_path / "clash.py"
    clash.write_text(
        "from tracer import hookimpl\nfrom tracer.plugins.pipeline import TensorStat\n\n"
        "@hookimpl\ndef register_tensor_stats(register):\n"
        "    register(TensorStat('pos_frac', abs))\n",
        encoding="utf-8",
    )
    done = tracer("run", "tiny", "--plugin", TINY, "--plugin", clash, cwd=tmp_path)
    line = assert_clean_failure(done)
    assert "'pos_frac' is registered twice in register_tensor_stats" in line
    assert not (tmp_path / "tracer.db").exists()


@pytest.mark.parametrize("name", ["my_plugin.py", "my_plugin"])
def test_cli_run_errors_unknown_pipeline_naming_a_file_hints_at_plugin(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "my_plugin.py").write_text("X = 1\n", encoding="utf-8")
    done = tracer("run", name, cwd=tmp_path)
    line = assert_clean_failure(done)
    assert line.startswith(f"Error: unknown pipeline {name!r}; available: sentiment")
    assert "'my_plugin.py' is a file here: load it with --plugin my_plugin.py" in line


def test_cli_run_errors_unknown_pipeline_naming_a_package_hints_at_entry_points(
    tmp_path: Path,
) -> None:
    done = tracer("run", "pluggy", cwd=tmp_path)
    line = assert_clean_failure(done)
    assert "The installed package pluggy" in line
    assert "declares no tracer plugin; a package declares its plugin in pyproject.toml" in line
    assert "[project.entry-points.tracer]" in line


def test_cli_run_errors_pipelines_json_lists_each_range(tmp_path: Path) -> None:
    done = tracer("pipelines", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [sentiment] = [p for p in json.loads(done.stdout) if p["name"] == "sentiment"]
    keys = {c["key"]: c for c in sentiment["config"]}
    assert (keys["hidden_dim"]["min"], keys["hidden_dim"]["max"]) == (1, 8192)
    assert keys["data_dir"]["min"] is None


def test_cli_run_errors_undeclared_int_keeps_to_64_bits(tmp_path: Path) -> None:
    done = tracer("run", "tiny", "--plugin", TINY, "--set", f"steps={2**63}", cwd=tmp_path)
    assert assert_clean_failure(done) == (
        f"Error: steps={2**63} is out of range (allowed: -9223372036854775808 to "
        "9223372036854775807 (a 64-bit integer))"
    )
    assert not (tmp_path / "tracer.db").exists()
