"""PostgreSQL that stops answering: a clear error within the timeout, one line, steps kept.

The frozen and stopped servers are dedicated ones started here (never the shared server other
tests use): ``SIGSTOP`` on every process of the cluster freezes it (its kernel still accepts
and acknowledges packets, so only a client-side deadline notices), and ``pg_ctl stop -m
immediate`` ends it mid-run. Both go through the real ``tracer run`` command.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tracer
from tracer.store import StoreError, open_store

pytestmark = pytest.mark.postgres

TRACER = str(Path(sys.executable).with_name("tracer"))
TINY_PLUGIN = Path(__file__).parents[1] / "plugins" / "tiny_plugin.py"
TIMEOUT_S = 2


def _cluster_class() -> Any:
    """tests/conftest.py's PostgresServer (loaded by path: conftest modules share a name)."""
    spec = importlib.util.spec_from_file_location(
        "tracer_test_pg_cluster", Path(__file__).parents[1] / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PostgresServer


@pytest.fixture
def own_server() -> Iterator[Any]:
    """A PostgreSQL server for this test alone."""
    try:
        import psycopg  # noqa: F401

        server = _cluster_class()()
        server.start()
    except (ImportError, RuntimeError, OSError) as exc:
        pytest.skip(f"PostgreSQL server could not be started: {exc}")
    try:
        yield server
    finally:
        server.stop()


def _cluster_pids(server: Any) -> list[int]:
    children = subprocess.run(
        ["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [server.pid, *map(int, children)]


def _start_run(url: str, tmp_path: Path) -> subprocess.Popen[str]:
    """``tracer run tiny`` for many slow steps, every step traced, into ``url``."""
    env = {**os.environ, "TRACER_DB_TIMEOUT": str(TIMEOUT_S), "TRACER_CACHE": str(tmp_path)}
    env.pop("TRACER_DEBUG", None)
    command = [TRACER, "run", "tiny", "--plugin", str(TINY_PLUGIN), "--db", url, "--every", "1",
               "--set", "steps=2000", "--set", "delay=0.02"]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )


def _wait_for_steps(url: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open_store(url) as store:
                runs = store.list_runs()
                if runs and len(store.steps(runs[0].id)) >= count:
                    return
        except StoreError:
            pass  # the run's first transaction may still be creating the schema
        time.sleep(0.2)
    raise AssertionError(f"the run never recorded {count} steps")


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert len(stderr.strip().splitlines()) <= 4, stderr  # the run's header, then the error
    return errors[0]


def test_frozen_server_mid_run_fails_within_the_timeout_and_keeps_steps(
    own_server: Any, tmp_path: Path
) -> None:
    url = own_server.url()
    proc = _start_run(url, tmp_path)
    try:
        _wait_for_steps(url, 5)
        pids = _cluster_pids(own_server)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=60)
            took = time.monotonic() - frozen_at
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
    finally:
        proc.kill()
    assert proc.returncode == 1
    line = _one_error_line(stderr)
    assert "did not answer within 4 s" in line and "TRACER_DB_TIMEOUT" in line, line
    # the write, marking the run failed and reading it back each wait at most about 2 s
    assert took < 8 * TIMEOUT_S, took
    with open_store(url) as store:
        (run,) = store.list_runs()
        steps = store.steps(run.id)
        assert len(steps) >= 5 and steps == list(range(len(steps)))
        assert run.status in ("failed", "interrupted")  # the frozen server could not be told
    # the last line says what the database holds
    said = "is marked failed" if run.status == "failed" else "could not be marked failed"
    assert said in line, line


def test_server_shutdown_mid_run_prints_one_line(own_server: Any, tmp_path: Path) -> None:
    url = own_server.url()
    proc = _start_run(url, tmp_path)
    try:
        _wait_for_steps(url, 3)
        own_server._run("pg_ctl", "-D", str(own_server.data), "-m", "immediate", "stop")
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        own_server.pid = None  # already stopped
    assert proc.returncode == 1
    line = _one_error_line(stderr)
    assert "database server" in line, line
    assert "could not be marked failed" in line and "is marked failed" not in line, line


def test_statement_timeout_on_a_live_server_marks_the_run_failed(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACER_DB_TIMEOUT", "1")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    import psycopg

    locker = psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql"))
    started = time.monotonic()
    with (
        pytest.raises(StoreError, match="statement_timeout"),
        tracer.trace(net, store=postgres_url, name="blocked") as t,
    ):
        for i in range(4):
            net(torch.randn(5, 4)).sum().backward()
            t.log(loss=float(i))
            if i == 2:  # another session holds the table the step writes into
                locker.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
            t.step()
    took = time.monotonic() - started
    locker.rollback()
    locker.close()
    assert took < 5, took
    with open_store(postgres_url) as store:
        (run,) = store.list_runs()
        assert run.status == "failed" and "statement_timeout" in (run.error or "")
        assert store.steps(run.id) == [0, 1]


def test_a_server_that_never_answers_the_connection_times_out() -> None:
    with socket.socket() as sock:  # accepts connections (the kernel's backlog), says nothing
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        port = sock.getsockname()[1]
        url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/x?tracer_timeout=2"
        started = time.monotonic()
        with pytest.raises(StoreError, match="did not accept the connection in time"):
            open_store(url)
        assert time.monotonic() - started < 10


def test_timeout_settings_are_checked() -> None:
    with pytest.raises(StoreError, match=r"tracer_timeout in the URL must be a number .* 'soon'"):
        open_store("postgresql+psycopg://u@127.0.0.1:1/x?tracer_timeout=soon")
