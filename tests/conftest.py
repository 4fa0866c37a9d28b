"""Suite-wide fixtures: a real PostgreSQL server started by the tests themselves.

``postgres_url`` gives each test a fresh, empty database on a server that this pytest process
(each xdist worker its own) starts once with Debian's ``initdb`` / ``pg_ctl`` as a non-root
user, listening on 127.0.0.1 on a free port, and stops by its pid at the end of the session.
When the server cannot be started the tests that need it fail if ``$CI`` is set and are skipped
(with the reason) otherwise. The compiled parts follow the same policy: a test that needs one
which is not built (``needs_extension`` marker, ``need_extension`` fixture) is skipped with the
reason, or fails when ``$TRACER_REQUIRE_EXTENSIONS`` is set (``.ci/run`` sets both).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb found)")
    return Path(initdb).parent


def _version_key(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throw-away PostgreSQL cluster in a temporary directory."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.base = Path(tempfile.mkdtemp(prefix="tracer-pg-"))
        self.data = self.base / "data"
        self.user = self._os_user()
        self.port = 0
        self.pid: int | None = None

    @staticmethod
    def _os_user() -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):  # initdb refuses to run as root
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run initdb")

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, cwd=self.base, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self) -> None:
        """initdb, then pg_ctl start on a free port (retried: another process may take it)."""
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        for attempt in range(3):
            self.port = _free_port()
            options = (
                f"-h 127.0.0.1 -p {self.port} -k {self.base} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            log = str(self.base / "server.log")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60",
                          "-o", options, "start")  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2:
                    raise RuntimeError(Path(log).read_text()[-2000:]) from None
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Fast shutdown by pid, then remove the cluster's directory."""
        pid, self.pid = self.pid, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.05)
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement (CREATE/DROP DATABASE) outside a transaction."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL server could not be started: {reason}"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (per xdist worker)."""
    try:
        import psycopg  # noqa: F401

        server = PostgresServer()
    except (ImportError, RuntimeError) as exc:
        _unavailable(str(exc))
    atexit.register(server.stop)  # also when the session is interrupted
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        _unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """``postgresql+psycopg://`` URL of a fresh, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres_server.admin(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
    yield postgres_server.url(name)
    with contextlib.suppress(Exception):  # a test may leave connections open; FORCE ends them
        postgres_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- the compiled parts ---------------------------------------------------------------------
#: Set (as CI does) to make a test that needs a compiled part which is not built fail, not skip.
REQUIRE_EXTENSIONS = "TRACER_REQUIRE_EXTENSIONS"


def _is_set(name: str) -> bool:
    return os.environ.get(name, "").lower() not in ("", "0", "false", "no")


def _extension_missing(name: str) -> str | None:
    """Why the compiled part ``name`` (``speedups`` or ``probe``) is not there; None if built."""
    if name == "speedups":
        from tracer.core import stats

        if stats.kernel_available():
            return None
        return f"tracer.core._speedups is not built ({stats.KERNEL_MISSING or 'no C compiler?'})"
    if name == "probe":
        from tracer.core import probe

        if probe.probe_available():
            return None
        why = probe.PROBE_MISSING or "pip install --no-build-isolation, with a C++ compiler"
        return f"tracer.core._probe is not built ({why})"
    raise ValueError(f"unknown compiled part {name!r} (speedups, probe)")


def need_extension(name: str) -> None:
    """Skip the test (with the reason) when the compiled part ``name`` is not built, or fail
    it when ``$TRACER_REQUIRE_EXTENSIONS`` is set."""
    missing = _extension_missing(name)
    if missing is None:
        return
    if _is_set(REQUIRE_EXTENSIONS):
        pytest.fail(f"{missing}; ${REQUIRE_EXTENSIONS} requires it", pytrace=False)
    pytest.skip(missing)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_extension(*names): skips (or fails in CI) without these compiled parts"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Each test starts with subnormal floats kept: a test that runs the sentiment pipeline in
    # its own process flushes them to zero (torch.set_flush_denormal, the thread's state), which
    # would change what the worker's later tests compute, and hypothesis refuses to draw floats
    # there. Nothing has set it where torch is not imported yet.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)
    for mark in item.iter_markers("needs_extension"):
        for name in mark.args:
            need_extension(name)


@pytest.fixture(name="need_extension")
def need_extension_fixture() -> Callable[[str], None]:
    """:func:`need_extension`, for fixtures that need a compiled part only for some params."""
    return need_extension
