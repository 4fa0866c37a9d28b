"""The database itself: read-only storage, ``tracer db check``, a PostgreSQL driver not installed.

Read-only storage is real: the folder holding the database is bind-mounted read-only in a
private mount namespace (``unshare -m``), so even root gets "Read-only file system" (chmod
would not stop root). Skipped where mounting is not allowed.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import Result
from namespaces import can_mount
from sqlalchemy import create_engine

from tracer.store import open_store
from tracer.store.migrate import upgrade_to

TRACER = str(Path(sys.executable).with_name("tracer"))
TINY_PLUGIN = Path(__file__).parents[1] / "plugins" / "tiny_plugin.py"


@pytest.fixture
def recorded(tmp_path: Path, run_tiny: object) -> Path:
    """A folder holding t.db with one completed tiny run (id 1), on read-only storage later."""
    if not can_mount(tmp_path):
        pytest.skip("cannot bind-mount here (needs a mount namespace)")
    folder = tmp_path / "ro"
    folder.mkdir()
    result: Result = run_tiny(db=str(folder / "t.db"))  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    return folder


def read_only(folder: Path, commands: list[str]) -> dict[str, tuple[int, str]]:
    """Run shell commands with ``folder`` mounted read-only: (exit status, output) by command."""
    script = [f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder}"]
    for i, command in enumerate(commands):
        script.append(f"echo '<<{i}>>'; {command} 2>&1; echo \"<<rc=$?>>\"")
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", " && ".join(script[:1]) + "; " + "; ".join(script[1:])],
        capture_output=True, text=True, timeout=600, cwd=folder.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found: dict[str, tuple[int, str]] = {}
    for i, command in enumerate(commands):
        part = done.stdout.split(f"<<{i}>>\n", 1)[1]
        output, rest = part.split("<<rc=", 1)
        found[command] = (int(rest.split(">>", 1)[0]), output)
    return found


def state(folder: Path) -> tuple[list[str], list[str]]:
    """Every file's name and contents: proof that nothing was written."""
    names = sorted(os.listdir(folder))
    return names, [hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names]


def test_reading_commands_work_on_read_only_storage_and_writing_ones_say_so(
    recorded: Path,
) -> None:
    db = recorded / "t.db"
    before = state(recorded)
    export = recorded.parent / "run.jsonl"
    with open_store(db) as store:
        store.export_run(1, export)
    assert state(recorded) == before
    reads = [
        f"{TRACER} runs --db {db}",
        f"{TRACER} show 1 --db {db}",
        f"{TRACER} db check --db {db}",
        f"{TRACER} export 1 -o {recorded.parent / 'again.jsonl'} --db {db}",
        f"{TRACER} diff 1 1 --db {db}",
    ]
    writes = [
        f"{TRACER} rm 1 --yes --db {db}",
        f"{TRACER} run tiny --plugin {TINY_PLUGIN} --db {db}",
        f"{TRACER} import {export} --db {db}",
    ]
    found = read_only(recorded, reads + writes)
    for command in reads:
        status, output = found[command]
        assert status == 0 and "corrupt" not in output, output
    assert "tiny" in found[reads[0]][1] and "completed" in found[reads[0]][1]
    assert found[reads[2]][1].startswith("ok: ")
    for command in writes:
        status, output = found[command]
        errors = [line for line in output.splitlines() if line.startswith("Error:")]
        assert status == 1 and "Traceback" not in output, output
        assert len(errors) == 1 and "is read-only (on a read-only file system)" in errors[0]
    assert state(recorded) == before


def test_unfinished_writes_in_the_wal_are_read_on_read_only_storage(recorded: Path) -> None:
    db = recorded / "t.db"
    # a process that dies with its last run still in the -wal file (no checkpoint on exit)
    code = (
        "import os\nfrom tracer.store import open_store\n"
        f"open_store({str(db)!r}).create_run(name='in-the-wal')\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (recorded / "t.db-wal").stat().st_size > 0
    command = f"{TRACER} runs --db {db}"
    status, output = read_only(recorded, [command])[command]
    assert status == 0 and "in-the-wal" in output, output
    (recorded / "t.db-shm").unlink()  # without it SQLite cannot read the -wal read-only
    status, output = read_only(recorded, [command])[command]
    assert status == 1 and "Traceback" not in output
    assert "its last writes are still in t.db-wal" in output, output


def test_tui_opens_a_database_on_read_only_storage(recorded: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    db = recorded / "t.db"
    before = state(recorded)
    socket = f"tracer-ro-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "TMUX"):
        env.pop(name, None)
    tui = shlex.quote(f"{TRACER} tui --db {db}")
    start = (
        f"mount --bind {recorded} {recorded} && mount -o remount,ro,bind {recorded} {recorded} "
        f"&& tmux -L {socket} -f /dev/null new-session -d -s ui -x 160 -y 48 {tui}"
    )
    subprocess.run(["unshare", "-m", "sh", "-c", start], env=env, check=True, timeout=60)
    try:
        shown = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "tiny" not in shown:
            time.sleep(0.3)
            shown = subprocess.run(
                ["tmux", "-L", socket, "capture-pane", "-p", "-t", "ui"],
                capture_output=True, text=True, env=env, check=False,
            ).stdout  # fmt: skip
        assert "tiny" in shown and "completed" in shown, shown
        assert "corrupt" not in shown.lower()
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)
    assert state(recorded) == before


def test_db_check_reports_a_damaged_page_and_exits_1(tmp_path: Path, tracer_cli: object) -> None:
    db = tmp_path / "d.db"
    with open_store(db) as store:
        run = store.create_run(name="r")
        writer = store.writer(run.id)
        for step in range(400):
            writer.write_metrics(step, {f"metric_{i}": float(step) for i in range(8)})
    ok: Result = tracer_cli("db", "check", "--db", db)  # type: ignore[operator]
    assert ok.exit_code == 0 and ok.stdout.startswith(f"ok: {db}")
    with sqlite3.connect(db) as conn:
        page = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'metrics' AND pagetype = 'leaf' "
            "ORDER BY pageno LIMIT 1 OFFSET 10"
        ).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with db.open("r+b") as f:
        f.seek((page - 1) * size)
        f.write(random.Random(0).randbytes(size))
    bad: Result = tracer_cli("db", "check", "--db", db)  # type: ignore[operator]
    assert bad.exit_code == 1
    assert bad.stdout.startswith(f"damaged: {db} (quick_check found")
    assert len(bad.stdout.splitlines()) >= 2
    thorough: Result = tracer_cli("db", "check", "--thorough", "--db", db)  # type: ignore[operator]
    assert thorough.exit_code == 1 and "integrity_check found" in thorough.stdout


def test_db_check_refuses_what_is_not_a_sqlite_file(tmp_path: Path, tracer_cli: object) -> None:
    missing: Result = tracer_cli("db", "check", "--db", tmp_path / "none.db")  # type: ignore[operator]
    assert missing.exit_code == 1 and "no database at" in missing.stderr
    server: Result = tracer_cli("db", "check", "--db", "postgresql://u@127.0.0.1:1/x")  # type: ignore[operator]
    assert server.exit_code == 1 and "checks SQLite files" in server.stderr


def test_postgres_url_without_the_driver_says_what_to_install(tmp_path: Path) -> None:
    # psycopg hidden from this interpreter: an import hook that refuses it, as if not installed
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'psycopg' or name.startswith(('psycopg.', 'psycopg_')):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(hide)}
    for url in ("postgresql+psycopg://u@127.0.0.1:1/x", "postgresql://u@127.0.0.1:1/x"):
        done = subprocess.run(
            [TRACER, "runs", "--db", url], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [
            f"Error: cannot open {url.replace('postgresql:', 'postgresql+psycopg:', 1)}: "
            "the PostgreSQL driver psycopg is not installed (pip install "
            "'layer-tracer[postgres]')"
        ], done.stderr


def test_an_older_schema_on_read_only_storage_says_it_cannot_be_upgraded(tmp_path: Path) -> None:
    if not can_mount(tmp_path):
        pytest.skip("cannot bind-mount here (needs a mount namespace)")
    folder = tmp_path / "old"
    folder.mkdir()
    engine = create_engine(f"sqlite:///{folder / 'old.db'}")
    upgrade_to(engine, "0002")
    engine.dispose()
    command = f"{TRACER} runs --db {folder / 'old.db'}"
    status, output = read_only(folder, [command])[command]
    assert status == 1 and "Traceback" not in output
    assert output.strip().splitlines() == [
        f"Error: {folder / 'old.db'} has the older schema revision 0002 and is read-only (on a "
        "read-only file system), so it cannot be upgraded: open it once where it can be written"
    ]
