"""``tracer export`` / ``import`` / ``rm`` as real processes: killed imports, live writers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tracer.store import open_store
from tracer.store.validate import check_export
from tracer.tui.data import StoreReader

ROOT = Path(__file__).parents[2]
#: A training script that records a small model's steps into a store and then waits.
WRITER = textwrap.dedent(
    """
    import sys, time
    import torch
    import tracer

    db, steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    with tracer.trace(model, store=db, name="live") as t:
        for step in range(steps):
            model(torch.randn(4, 8)).sum().backward()
            t.log(loss=float(step))
            t.step()
            if step == 0:
                print("ready", flush=True)
            time.sleep(pause)
        print("ready", flush=True)
        time.sleep(120)
    """
)


def env() -> dict[str, str]:
    """The current environment without tracer settings, the checkout importable."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), clean.get("PYTHONPATH")]))
    return clean


def tracer(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tracer ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "tracer", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env(),
        timeout=300,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (exit status 1, no traceback)."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0].removeprefix("Error: ")


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that records one traced step into ``live.db`` and then waits."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "live.db"), "1", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def small_export(tmp_path: Path) -> Path:
    """A real export (``tracer export``) of a traced model's run: 3 steps."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER.replace("time.sleep(120)", "pass"))
    db = tmp_path / "source.db"
    subprocess.run([sys.executable, str(script), str(db), "3", "0"], env=env(), check=True)
    path = tmp_path / "small.jsonl"
    assert tracer("export", "live", "--db", db, "-o", path, cwd=tmp_path).returncode == 0
    return path


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export whose step line is repeated for 6,000 steps (about 40 MB, seconds)."""
    folder = tmp_path_factory.mktemp("big")
    lines = small_export(folder).read_text().splitlines()
    header, step = lines[:3], json.loads(lines[3])
    path = folder / "big.jsonl"
    with path.open("w") as fh:
        fh.write("\n".join(header) + "\n")
        for number in range(6_000):
            step["step"] = number
            for call in step["calls"]:
                call["step"] = number
            fh.write(json.dumps(step) + "\n")
    return path


def kept_run(db: str | Path) -> int:
    """Record one run in ``db`` (the data an import must never lose); return its id."""
    with open_store(db) as store:
        run = store.create_run(name="kept")
        store.finish_run(run.id, "completed")
        return run.id


def wal_growing(db: Path) -> bool:
    """True once SQLite spills the import's uncommitted pages into the write-ahead log."""
    wal = Path(f"{db}-wal")
    return wal.exists() and wal.stat().st_size > 1_000_000


def start_import(args: list[str], cwd: Path, *, plain: bool = False) -> subprocess.Popen[str]:
    """Start ``tracer import`` (``plain``: without the CLI's SIGTERM handler)."""
    if plain:
        code = "import sys; from tracer.cli import cli; cli.main(sys.argv[1:], prog_name='tracer')"
        command = [sys.executable, "-c", code, "import", *args]
    else:
        command = [sys.executable, "-m", "tracer", "import", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition: object, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Poll ``condition()`` until true; fail if the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert proc.poll() is None, f"the import ended first: {proc.communicate()}"
        assert time.monotonic() < deadline, "the import never started writing"
        time.sleep(0.01)


def assert_untouched(db: Path, kept: int) -> None:
    """Only the kept run is there, and SQLite finds the file intact."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with open_store(db) as store:
        assert [(r.id, r.name, r.steps) for r in store.list_runs()] == [(kept, "kept", 0)]


@pytest.mark.parametrize(
    ("how", "plain", "status"),
    [
        (signal.SIGKILL, False, -signal.SIGKILL),
        (signal.SIGTERM, False, 143),
        (signal.SIGTERM, True, -signal.SIGTERM),
    ],
    ids=["sigkill", "sigterm", "sigterm-default-action"],
)
def test_cli_transfer_killed_import_leaves_nothing(
    tmp_path: Path, big_export: Path, how: int, plain: bool, status: int
) -> None:
    db = tmp_path / "t.db"
    kept = kept_run(db)
    proc = start_import([str(big_export), "--db", str(db)], tmp_path, plain=plain)
    wait_for(lambda: wal_growing(db), proc)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert_untouched(db, kept)
    # nothing of it stayed behind: the same file imports (it is not "already held")
    done = tracer("import", big_export, "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open_store(db) as store:
        assert store.get_run("live").steps == 6_000


@pytest.mark.postgres
def test_cli_transfer_killed_import_leaves_nothing_postgres(
    tmp_path: Path, big_export: Path, postgres_url: str
) -> None:
    kept = kept_run(postgres_url)
    proc = start_import([str(big_export), "--db", postgres_url], tmp_path)
    with open_store(postgres_url) as store:

        def writing() -> bool:
            # the import holds its advisory lock for the whole transaction
            with store.reading() as conn:
                query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                return bool(conn.execute(text(query)).scalar())

        wait_for(writing, proc)
        time.sleep(0.5)
        proc.kill()
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 30  # the server notices the dropped connection
        while writing() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(r.id, r.name) for r in store.list_runs()] == [(kept, "kept")]


def test_cli_transfer_wrong_rank_type_refused_and_runs_still_listed(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    kept = kept_run(db)
    source = small_export(tmp_path)
    lines = source.read_text().splitlines()
    run = json.loads(lines[1])
    run["rank"] = "0"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps(run), *lines[2:]]) + "\n")
    message = one_line_error(tracer("import", bad, "--db", db, cwd=tmp_path))
    assert message == f"{bad}:2: field rank: expected an integer, got '0'"
    listed = tracer("runs", "--db", db, "--format", "json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [kept]
    inspector = StoreReader.open(str(db))  # the TUI's run list reads the same rows
    try:
        assert [r.id for r in inspector.runs()] == [kept]
    finally:
        inspector.close()


def test_cli_transfer_import_twice_refused_unless_as_new(tmp_path: Path) -> None:
    source = small_export(tmp_path)
    assert tracer("import", source, "--db", "t.db", cwd=tmp_path).returncode == 0
    again = one_line_error(tracer("import", source, "--db", "t.db", cwd=tmp_path))
    assert again == (
        "run 1 already holds this run (same origin: host, pid, start time, name, rank); "
        "use --as-new to import a copy"
    )
    copied = tracer("import", source, "--db", "t.db", "--as-new", cwd=tmp_path)
    assert copied.returncode == 0 and "imported as run 2 (live)" in copied.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "{path}: the file is empty, not a layer-tracer run export"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "{path}:1: not UTF-8 text (byte 0x89)"),
        (b"\x00\x01\x02\n", "{path}:1: not a JSON line (Expecting value at column 1)"),
        (b'{"format": "other"}\n', "{path}: not a layer-tracer run export (no header line)"),
    ],
    ids=["empty", "binary", "nul-bytes", "other-json"],
)
def test_cli_transfer_import_bad_file_is_one_line(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    message = one_line_error(tracer("import", path, "--db", "t.db", cwd=tmp_path))
    assert message == expected.format(path=path)
    assert not (tmp_path / "t.db").exists()  # refused before a database was made for it


def test_cli_transfer_import_directory_and_missing_file(tmp_path: Path) -> None:
    folder = one_line_error(tracer("import", tmp_path, "--db", "t.db", cwd=tmp_path))
    assert folder == f"cannot read {tmp_path}: it is a directory"
    missing = one_line_error(tracer("import", "nope.jsonl", "--db", "t.db", cwd=tmp_path))
    assert missing == "cannot read nope.jsonl: no such file"


def test_cli_transfer_import_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    source = small_export(tmp_path)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    done = tracer("import", bom, "--db", "t.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open_store(tmp_path / "t.db") as store:
        assert store.get_run("live").steps == 3


def test_cli_transfer_export_suffixes(tmp_path: Path) -> None:
    source = small_export(tmp_path)
    db = tmp_path / "source.db"
    for name in ("a.jsonl", "b.JSONL", "c.json", "d.ndjson"):
        done = tracer("export", "live", "--db", db, "-o", name, cwd=tmp_path)
        assert done.returncode == 0 and "as json" in done.stdout, done.stderr
        assert (tmp_path / name).read_text() == source.read_text()
    done = tracer("export", "live", "--db", db, "-o", "e.CSV", cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "e.CSV").read_text().startswith("step,seq,")
    odd = one_line_error(tracer("export", "live", "--db", db, "-o", "f.txt", cwd=tmp_path))
    assert (
        odd == "no exporter for the suffix '.txt'; available: json, csv (choose one with --format)"
    )


def test_cli_transfer_export_to_bad_places(tmp_path: Path) -> None:
    small_export(tmp_path)
    db = tmp_path / "source.db"
    missing = one_line_error(tracer("export", "1", "--db", db, "-o", "no/x.jsonl", cwd=tmp_path))
    assert missing == "cannot write no/x.jsonl: the directory no does not exist"
    (tmp_path / "dir.jsonl").mkdir()
    folder = one_line_error(tracer("export", "1", "--db", db, "-o", "dir.jsonl", cwd=tmp_path))
    assert folder == "cannot write dir.jsonl: it is a directory"
    proc = one_line_error(tracer("export", "1", "--db", db, "-o", "/proc/x.csv", cwd=tmp_path))
    assert proc.startswith("cannot write /proc/x.csv: ")
    # a file that cannot be replaced keeps its content
    (tmp_path / "ro").mkdir()
    kept = tmp_path / "ro" / "run.jsonl"
    kept.write_text("old\n")
    (tmp_path / "ro").chmod(0o500)
    try:
        done = tracer("export", "1", "--db", db, "-o", kept, cwd=tmp_path)
    finally:
        (tmp_path / "ro").chmod(0o700)
    if os.geteuid() != 0:  # root writes anywhere
        assert one_line_error(done).startswith(f"cannot write {kept}: permission denied")
        assert kept.read_text() == "old\n"
    assert not list((tmp_path / "ro").glob(".*part"))


def test_cli_transfer_export_of_a_run_being_written_is_one_snapshot(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    db = tmp_path / "live.db"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), "400", "0"], stdout=subprocess.PIPE, env=env()
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        sizes = []
        for number in range(4):
            path = tmp_path / f"x{number}.jsonl"
            done = tracer("export", "live", "--db", db, "-o", path, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            steps = [line["step"] for line in lines if line.get("type") == "step"]
            logged = [line["step"] for line in lines if line.get("type") == "metrics"]
            assert steps == logged == list(range(len(steps)))  # each step with its metrics
            assert check_export(path).steps == len(steps)
            sizes.append(len(steps))
            imported = tracer("import", path, "--db", f"copy{number}.db", cwd=tmp_path)
            assert imported.returncode == 0, imported.stderr
            with open_store(tmp_path / f"copy{number}.db") as store:
                copy = store.get_run("live")
                assert (copy.status, copy.steps) in (("interrupted", len(steps)),)
        assert sizes == sorted(sizes)
    finally:
        proc.kill()
        proc.wait()


def test_cli_transfer_rm_refuses_a_run_being_written(
    tmp_path: Path, writer: subprocess.Popen[str]
) -> None:
    db = tmp_path / "live.db"
    refused = one_line_error(tracer("rm", "live", "--db", db, "--yes", cwd=tmp_path))
    with open_store(db) as store:
        run = store.get_run("live")
    assert refused == (
        f"run {run.id} (live) is still being written by pid {writer.pid} on host {run.host}; "
        "use --force to delete it anyway"
    )
    assert writer.poll() is None  # the training job goes on
    with open_store(db) as store:
        assert store.get_run("live").steps == 1
    writer.kill()
    writer.wait()
    # its writer is gone: the run is interrupted and can be removed without --force
    done = tracer("rm", "live", "--db", db, "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open_store(db) as store:
        assert store.list_runs() == []


def test_cli_transfer_rm_force_deletes_a_run_being_written(
    tmp_path: Path, writer: subprocess.Popen[str]
) -> None:
    db = tmp_path / "live.db"
    done = tracer("rm", "live", "--db", db, "--yes", "--force", cwd=tmp_path)
    assert done.returncode == 0 and "deleted run 1 (live)" in done.stdout, done.stderr
    with open_store(db) as store:
        assert store.list_runs() == []


def test_cli_transfer_rm_refuses_a_running_run_of_another_host(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with open_store(db) as store:
        run = store.create_run(name="far")
    with sqlite3.connect(db) as conn:  # as another machine would have recorded it, long ago
        conn.execute("UPDATE runs SET host = 'gpu-7', pid = 4242, updated_at = 0")
    refused = one_line_error(tracer("rm", "far", "--db", db, "--yes", cwd=tmp_path))
    assert refused.startswith(
        f"run {run.id} (far) is marked running by pid 4242 on host gpu-7, which cannot be "
        "checked from here, last write "
    )
    assert refused.endswith("; use --force to delete it anyway")
    done = tracer("rm", "far", "--db", db, "--yes", "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
