"""Fixtures for the command tests: a database with two recorded sentiment runs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tracer.cli import cli

TINY_PLUGIN = Path(__file__).parents[1] / "plugins" / "tiny_plugin.py"
#: Small enough to be quick, with the article's dimensions where they shape the flow.
QUICK = ["max_reviews=500", "epochs=1", "steps_per_epoch=1"]

Invoke = Callable[..., Result]


def invoke(*args: object, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Run the command in-process (click's runner); stdout and stderr kept apart."""
    return CliRunner().invoke(
        cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False
    )


def sets(values: list[str]) -> list[str]:
    """``--set`` options for each value."""
    return [part for value in values for part in ("--set", value)]


@pytest.fixture
def tracer_cli() -> Invoke:
    """Run ``tracer ARGS...`` in-process; returns click's Result."""
    return invoke


@pytest.fixture
def tiny_plugin() -> Path:
    """The test plugin file with the ``tiny`` pipeline and every hook."""
    return TINY_PLUGIN


@pytest.fixture
def run_tiny() -> Invoke:
    """Run ``tracer run tiny --plugin tiny_plugin.py --db t.db ARGS...`` (``db=`` for another)."""

    def run(*args: object, db: str = "t.db") -> Result:
        return invoke("run", "tiny", "--plugin", TINY_PLUGIN, "--db", db, *args)

    return run


@pytest.fixture
def quick_sets() -> list[str]:
    """``--set`` options for a quick sentiment run with the article's dimensions."""
    return sets(QUICK)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user database, cache or disabled plugins leak into the tests."""
    monkeypatch.delenv("TRACER_DB", raising=False)
    monkeypatch.delenv("TRACER_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("TRACER_DEBUG", raising=False)
    monkeypatch.setenv("TRACER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with run 1 "big" (hidden_dim 512) and run 2 "small" (hidden_dim 256).

    Recorded once per test session and shared by the xdist workers (a file lock in the
    session's common temporary folder), since each run trains the article's LSTM.
    """
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's base folder sits inside the session's: share that one
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "two-runs"
    shared.mkdir(exist_ok=True)
    db, done = shared / "runs.db", shared / "done"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _record_two_runs(db)
            done.touch()
    return db


def _record_two_runs(db: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACER_CACHE", str(db.parent / "cache"))
        for name, hidden in (("big", 512), ("small", 256)):
            result = invoke(
                "run",
                "sentiment",
                "--db",
                db,
                "--name",
                name,
                "--every",
                "1",
                *sets([*QUICK, f"hidden_dim={hidden}"]),
            )
            assert result.exit_code == 0, result.output
