"""``tracer check`` and ``tracer run --check`` on runs of a pipeline that makes NaN on cue."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke

PLUGIN = '''
"""A pipeline whose log layer makes NaN from step ``nan_at`` on, and a rule of its own."""

from dataclasses import dataclass, field

from tracer import hookimpl
from tracer.checks import Finding, Rule, Threshold
from tracer.plugins.pipeline import Pipeline


@dataclass
class Config:
    steps: int = field(default=4, metadata={"help": "training steps"})
    nan_at: int = field(default=2, metadata={"help": "first step with a NaN (-1: never)"})


def data(config):
    import torch

    return torch.randn(8, 3, generator=torch.Generator().manual_seed(0))


def model(config):
    import torch
    from torch import nn

    class Shift(nn.Module):
        offset = 0.0

        def forward(self, x):
            return torch.log(x.abs() + 1 - self.offset)

    return nn.Sequential(nn.Linear(3, 4), Shift(), nn.Linear(4, 1))


def train(model, data, config, ctx):
    for i in range(config.steps):
        model[1].offset = 100.0 if 0 <= config.nan_at <= i else 0.0
        model(data + i).mean().backward()
        ctx.step({"loss": 1.0})


def every_linear(records, limits):
    for layer in records.layers:
        if layer.type == "Linear" and layer.key.module == "2":
            call = layer.calls[0]
            yield Finding(
                "every-linear", "info", call.module, call.call_index, call.kind, "0", "output",
                call.step, "a [bold]Linear[/] \\x1b[31mlayer", seq=call.seq,
            )


@hookimpl
def register_pipelines(register):
    register(Pipeline("nanny", "NaN on cue", Config, data, model, train))


@hookimpl
def register_checks(register):
    register(Rule("every-linear", "info", "marks the last Linear", every_linear,
                  (Threshold("limit", 1.0, "unused", min=0, max=2),)))
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "nanny.py"
    path.write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    return path


@pytest.fixture
def nan_run(tracer_cli: Invoke, plugin: Path) -> Path:
    """A database with run 1: NaN at steps 2 and 3 in module "1"."""
    result = tracer_cli("run", "nanny", "--plugin", plugin, "--db", "n.db", "--every", "1")
    assert result.exit_code == 0, result.output
    return Path("n.db")


def test_cli_check_table_names_the_layer_and_steps(tracer_cli: Invoke, nan_run: Path) -> None:
    result = tracer_cli("check", "1", "--db", nan_run)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run 1 nanny · completed · 4 traced steps checked")
    (row,) = [line for line in lines if line.lstrip().startswith("error")]
    assert row.split()[:5] == ["error", "nan", "1", "0", "(output)"]
    assert " 2-3 " in row
    assert "1 error, 0 warnings" in result.stdout


def test_cli_check_json_has_every_field(tracer_cli: Invoke, nan_run: Path) -> None:
    result = tracer_cli("check", "latest", "--db", nan_run, "--format", "json")
    doc = json.loads(result.stdout)
    assert doc["run"] == 1 and doc["steps"] == [0, 1, 2, 3]
    (found,) = doc["findings"]
    assert found == {
        "rule": "nan",
        "severity": "error",
        "module": "1",
        "call_index": 0,
        "kind": "module",
        "op": None,
        "slot": "0",
        "role": "output",
        "step": 2,
        "until": 3,
        "message": found["message"],
        "figures": {"nan_count": 32, "inf_count": 0},
    }


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([], 0),
        (["--exit-code"], 1),
        (["--exit-code", "--step", "0", "--step", "1"], 0),
        (["--exit-code", "--rule", "drift"], 0),
    ],
)
def test_cli_check_exit_code_gates_on_errors(
    tracer_cli: Invoke, nan_run: Path, args: list[str], code: int
) -> None:
    assert tracer_cli("check", "1", "--db", nan_run, *args).exit_code == code


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["9"], "no run or distributed job '9'"),
        (["1", "--rule", "nope"], "unknown rule 'nope'"),
        (["1", "--step", "7"], "run 1 has no traced step 7 (traced: 0, 1, 2, 3)"),
        (["1", "--threshold", "drift.shift"], "expected RULE.NAME=VALUE"),
        (["1", "--threshold", "nope.x=1"], "unknown rule 'nope'"),
        (["1", "--threshold", "drift.shift=abc"], "'abc' is not a number"),
        (["1", "--threshold", "drift.shift=-1"], "shift must be between 0 and inf"),
        (["1", "--threshold", "drift.nope=1"], "rule drift has no threshold 'nope'"),
        (["1", "--rank", "1"], "run 1 is a single process: it has no rank 1"),
    ],
)
def test_cli_check_bad_input_is_one_line_and_exit_2(
    tracer_cli: Invoke, nan_run: Path, args: list[str], message: str
) -> None:
    result = tracer_cli("check", *args, "--db", nan_run)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and message in line


def test_cli_check_threshold_changes_what_fires(tracer_cli: Invoke, nan_run: Path) -> None:
    loose = tracer_cli("check", "1", "--db", nan_run, "--rule", "drift", "--format", "json")
    tight = tracer_cli(
        "check", "1", "--db", nan_run, "--rule", "drift", "--threshold", "drift.min_steps=2",
        "--threshold", "drift.shift=0", "--threshold", "drift.steady=0", "--format", "json",
    )  # fmt: skip
    assert json.loads(loose.stdout)["notes"] == ["drift: needs 5 checked steps, the check has 4"]
    assert json.loads(tight.stdout)["findings"]


def test_cli_check_list_describes_rules_thresholds_and_sources(tracer_cli: Invoke) -> None:
    result = tracer_cli("check", "--list")
    assert result.exit_code == 0
    for name in ("nan", "saturation", "dead-units", "dtype-change", "device-hop"):
        assert name in result.stdout
    assert "--threshold vanishing-grad.depth_factor=1000" in result.stdout
    assert "Glorot & Bengio 2010" in result.stdout and "Pascanu" in result.stdout
    doc = json.loads(tracer_cli("check", "--rules", "--format", "json").stdout)
    assert [r["name"] for r in doc][:2] == ["nan", "saturation"]


def test_cli_check_plugin_rule_runs_and_its_strings_are_literal(
    tracer_cli: Invoke, nan_run: Path, plugin: Path
) -> None:
    result = tracer_cli("check", "1", "--db", nan_run, "--plugin", plugin)
    assert "every-linear" in result.stdout
    assert "a [bold]Linear[/] \\x1b[31mlayer" in result.stdout
    assert "\x1b" not in result.stdout
    listed = tracer_cli("check", "--list", "--plugin", plugin)
    assert "(plugin: nanny)" in listed.stdout


def test_cli_run_prints_the_findings_count(tracer_cli: Invoke, plugin: Path) -> None:
    args = ("run", "nanny", "--plugin", plugin, "--db", "c.db", "--every", "1")
    clean = tracer_cli(*args, "--set", "nan_at=-1")
    # the plugin's own rule marks one layer: 1 info
    assert "checks: 0 errors, 0 warnings, 1 info — tracer check 1" in clean.stdout
    dirty = tracer_cli(*args)
    assert "checks: 1 error, 0 warnings, 1 info — tracer check 2" in dirty.stdout
    assert "error at step" not in dirty.stderr  # only with --check


def test_cli_run_check_prints_the_first_error_when_its_step_is_written(
    tracer_cli: Invoke, plugin: Path
) -> None:
    result = tracer_cli(
        "run", "nanny", "--plugin", plugin, "--db", "c.db", "--every", "1", "--check",
        "--set", "steps=5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error at")]
    assert line.startswith("error at step 2: nan: 1 made 32 NaN in its output 0 at step 2")
    assert "checks: 1 error" in result.stdout
