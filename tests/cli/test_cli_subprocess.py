"""``python -m tracer`` as a real process: the article run, errors, Ctrl-C, the example plugin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_process import stop_a_long_run

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "cnn-demo"


def tracer(
    *args: object, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess:
    """Run ``python -m tracer ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "tracer", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The current environment without tracer settings, with an empty data cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    env["TRACER_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), extra.pop("PYTHONPATH", "")]))
    return {**env, **extra}


@pytest.mark.slow
def test_cli_process_runs_sentiment_and_shows_the_article_flow(
    tmp_path: Path, quick_sets: list[str]
) -> None:
    env = clean_env(tmp_path)
    ran = tracer("run", "sentiment", *quick_sets, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "using the built-in generated corpus" in ran.stderr
    assert "run id: 1" in ran.stdout
    assert (tmp_path / "tracer.db").exists()  # the default database, in the working directory
    shown = tracer("show", "latest", "--format", "json", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    shapes = [(c["name"], c["outputs"][0]["shape"]) for c in json.loads(shown.stdout)["calls"]]
    assert shapes == [
        ("<root>", [50]),
        ("embedding", [50, 200, 30]),
        ("lstm", [50, 200, 512]),
        ("view", [10000, 512]),
        ("fc", [10000, 1]),
        ("sig", [10000, 1]),
        ("view", [50, 200]),
        ("getitem", [50]),
    ]


def test_cli_process_errors_are_one_line_with_a_non_zero_status(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    result = tracer("run", "nope", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: unknown pipeline 'nope'; available: sentiment"
    assert tracer("show", "1", env=env, cwd=tmp_path).returncode == 1
    assert tracer("--version", env=env, cwd=tmp_path).stdout.startswith("tracer, version")


def test_cli_process_ctrl_c_stops_cleanly_and_keeps_the_steps(
    tmp_path: Path, tiny_plugin: Path
) -> None:
    env = clean_env(tmp_path)
    returncode, stderr = stop_a_long_run(tmp_path, signal.SIGINT, tiny_plugin)
    assert returncode == 130, stderr
    assert "Traceback" not in stderr
    runs = json.loads(
        tracer("runs", "--db", "t.db", "--format", "json", env=env, cwd=tmp_path).stdout
    )
    assert runs[0]["status"] == "interrupted"
    assert runs[0]["steps"] >= 3


CNN_SETS = ["--set", "n_images=160", "--every", "2"]


def test_example_plugin_runs_as_a_single_file(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    ran = tracer(
        "run", "cnn", "--plugin", EXAMPLE / "cnn_demo.py", *CNN_SETS, env=env, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    shown = json.loads(tracer("show", "latest", "--format", "json", env=env, cwd=tmp_path).stdout)
    assert shown["run"]["pipeline"] == "cnn"
    shapes = {c["name"]: c["outputs"][0]["shape"] for c in shown["calls"]}
    assert shapes["0"] == [32, 8, 16, 16] and shapes["7"] == [32, 2]


def fake_install(site: Path) -> None:
    """What ``pip install examples/cnn-demo`` leaves behind: a dist-info with the entry point."""
    info = site / "tracer_cnn_demo-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tracer-cnn-demo\nVersion: 0.1.0\n")
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    lines = [f"{k} = {v}" for k, v in project["entry-points"]["tracer"].items()]
    (info / "entry_points.txt").write_text("[tracer]\n" + "\n".join(lines) + "\n")


def test_example_plugin_is_found_through_its_entry_point(tmp_path: Path) -> None:
    fake_install(tmp_path / "site")
    env = clean_env(tmp_path, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(EXAMPLE)]))
    listed = tracer("plugins", "--format", "json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    plugin = {p["name"]: p for p in json.loads(listed.stdout)}["cnn-demo"]
    assert plugin["source"] == "tracer-cnn-demo 0.1.0"
    assert plugin["contributes"] == ["pipeline cnn"]
    ran = tracer("run", "cnn", *CNN_SETS, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    # the same plugin twice (installed and as a file) is a clash naming both plugins
    twice = tracer("run", "cnn", "--plugin", EXAMPLE / "cnn_demo.py", env=env, cwd=tmp_path)
    assert twice.returncode == 1
    assert "plugin 'cnn-demo' and by plugin 'cnn_demo'" in twice.stderr
