"""``tracer serve``'s command line: its errors are one line, its defaults are safe."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from serve_support import serving, tracer_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with no runs."""
    from tracer.store import open_store

    db = tmp_path_factory.mktemp("serve-cli") / "empty.db"
    open_store(db).close()
    return db


def tracer(*args: str, cwd: Path, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``tracer ARGS`` in a subprocess, after ``prelude`` (Python) has run in it."""
    code = f"{prelude}\nfrom tracer.cli.main import main\nmain()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=tracer_env(cwd),
        timeout=60,
        check=False,
    )


def test_serve_without_the_web_extra_says_how_to_install_it(empty_db: Path) -> None:
    blocked = "import sys; sys.modules['textual_serve'] = None  # as if not installed"
    result = tracer("serve", "--db", str(empty_db), cwd=empty_db.parent, prelude=blocked)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "pip install 'layer-tracer[web]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_serve_without_a_database_fails_before_serving(tmp_path: Path) -> None:
    result = tracer("serve", "--db", str(tmp_path / "none.db"), "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no database at" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_on_a_taken_port_is_one_line(empty_db: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = tracer("serve", "--db", str(empty_db), "--port", port, cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_serve_locally_is_read_write_without_a_warning(empty_db: Path, tmp_path: Path) -> None:
    with serving(empty_db, tmp_path) as served:
        assert served.url.startswith("http://127.0.0.1:")
        assert "warning" not in served.stderr()
        assert "runs can be deleted" in served.stderr()


def test_serve_on_every_interface_warns_and_is_read_only(empty_db: Path, tmp_path: Path) -> None:
    with serving(empty_db, tmp_path, "--host", "0.0.0.0") as served:
        assert served.url.startswith(f"http://{socket.gethostname()}:")
        logged = " ".join(served.stderr().split())
        assert "warning: listening on 0.0.0.0" in logged
        assert "(read-only)" in logged


def test_serve_read_write_on_another_host_when_asked(empty_db: Path, tmp_path: Path) -> None:
    with serving(empty_db, tmp_path, "--host", "0.0.0.0", "--read-write") as served:
        logged = " ".join(served.stderr().split())
        assert "warning: listening on 0.0.0.0" in logged
        assert "runs can be deleted" in logged
