"""``tracer doctor``: one line per part of the install, exit 1 only when something is broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tracer.core import probe_build

ROOT = Path(__file__).resolve().parents[2]
PARTS = ["python", "torch", "tracer", "kernel", "probe", "compiler", "cache", "database"]


def doctor(
    *args: str, cwd: Path, site: Path = ROOT, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python -m tracer doctor ARGS`` in a fresh process, without the user's tracer settings,
    with the package found at ``site`` and a probe cache inside ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    env.update(PYTHONPATH=str(site), TRACER_PROBE_CACHE=str(cwd / "probe-cache"), **extra)
    return subprocess.run(
        [sys.executable, "-m", "tracer", "doctor", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False,
    )  # fmt: skip


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The report's lines by part: ``{"torch": "ok    torch  2.13.0 (...)"}``."""
    found = {}
    for line in done.stdout.splitlines():
        words = line.split()
        if len(words) > 2 and words[0] in ("ok", "warn", "error"):
            found[words[1]] = line
    return found


def level(done: subprocess.CompletedProcess[str], part: str) -> str:
    return lines(done)[part].split()[0]


def package_copy(where: Path, *, drop_probe: bool) -> Path:
    """A copy of the package (without its built probe if ``drop_probe``); its PYTHONPATH."""
    ignore = ["__pycache__", *(["_probe.*.so"] if drop_probe else [])]
    shutil.copytree(
        ROOT / "tracer", where / "site" / "tracer", ignore=shutil.ignore_patterns(*ignore)
    )
    return where / "site"


@pytest.mark.needs_extension("speedups", "probe")
def test_doctor_reports_every_part_one_line_each(tmp_path: Path) -> None:
    done = doctor(cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    found = lines(done)
    assert [part for part in found if part != "postgres"] == PARTS, done.stdout
    assert all(level(done, part) == "ok" for part in PARTS), done.stdout
    assert f"python    {sys.version.split()[0]} ({sys.executable})" in found["python"]
    assert f"torch     {torch.__version__} (" in found["torch"]
    assert "tracer.core._speedups built (" in found["kernel"]
    from tracer.core import _speedups

    assert found["kernel"].endswith(f", {_speedups.width()}-bit pass")
    assert "loaded from the package (" in found["probe"]
    assert f"{tmp_path / 'probe-cache'} ($TRACER_PROBE_CACHE)" in found["cache"]
    db = tmp_path / "tracer.db"
    assert (
        f"./tracer.db (the default, {db}): not created yet, its folder is writable"
        in (found["database"])
    )
    assert done.stdout.splitlines()[-1].startswith("everything is usable")
    assert done.stderr == ""
    assert not (tmp_path / "probe-cache").exists()  # a report builds nothing


def test_doctor_postgres_driver_line(tmp_path: Path) -> None:
    done = doctor(cwd=tmp_path)
    try:
        import psycopg
    except ImportError:
        assert level(done, "postgres") == "warn" and "layer-tracer[postgres]" in done.stdout
        return
    assert f"driver psycopg {psycopg.__version__}" in lines(done)["postgres"]


@pytest.mark.parametrize("where", ["under-a-file", "a-folder"])
def test_doctor_database_that_cannot_be_written_is_broken(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    if where == "under-a-file":
        blocker.write_text("")
        db = blocker / "tracer.db"
    else:
        db = blocker
        db.mkdir()
    done = doctor(cwd=tmp_path, TRACER_DB=str(db))
    assert done.returncode == 1, done.stdout + done.stderr
    assert level(done, "database") == "error"
    assert f"{db} ($TRACER_DB, {db})" in lines(done)["database"]
    assert done.stdout.splitlines()[-1] == "broken: database"
    assert "Traceback" not in done.stdout + done.stderr


def test_doctor_existing_database_is_checked_writable(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    db.write_bytes(b"")
    done = doctor(cwd=tmp_path, TRACER_DB=str(db))
    assert level(done, "database") == "ok" and lines(done)["database"].endswith(": writable")


def test_doctor_server_url_hides_the_password_and_is_not_contacted(tmp_path: Path) -> None:
    url = "postgresql+psycopg://someone:s3cret@db.invalid:5432/runs"
    done = doctor(cwd=tmp_path, TRACER_DB=url)
    assert "s3cret" not in done.stdout
    assert "postgresql+psycopg://someone:***@db.invalid:5432/runs ($TRACER_DB; not contacted" in (
        done.stdout
    )


def test_doctor_url_of_a_backend_that_cannot_load_is_broken(tmp_path: Path) -> None:
    done = doctor(cwd=tmp_path, TRACER_DB="nosuchdb://someone:s3cret@host/runs")
    assert done.returncode == 1, done.stdout + done.stderr
    line = lines(done)["database"]
    assert line.startswith("error") and "nosuchdb://someone:***@host/runs" in line
    assert "cannot be opened here (NoSuchModuleError: " in line and "s3cret" not in done.stdout


def test_doctor_without_torch_is_broken(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('this torch is broken')\n")
    done = doctor(cwd=tmp_path, site=Path(f"{fake}{os.pathsep}{ROOT}"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error torch" in done.stdout
    assert "cannot be imported (ImportError: this torch is broken)" in done.stdout
    assert "kernel" not in lines(done) and "probe" not in lines(done)  # they need torch
    assert done.stdout.splitlines()[-1] == "broken: torch"
    assert "Traceback" not in done.stdout + done.stderr


def test_doctor_probe_not_built_says_the_first_trace_builds_it(tmp_path: Path) -> None:
    site = package_copy(tmp_path, drop_probe=True)
    done = doctor(cwd=tmp_path, site=site)
    assert done.returncode == 0, done.stdout + done.stderr
    line = lines(done)["probe"]
    assert line.startswith("warn  probe     not built: not built at install; the first trace "), (
        line
    )
    key = probe_build.cache_key(torch.__version__)
    assert f"into {tmp_path / 'probe-cache' / key}, or `tracer doctor --build` now" in line
    assert "(1 warning(s))" in done.stdout.splitlines()[-1]
    assert not (tmp_path / "probe-cache").exists()


def test_doctor_build_without_compiler_fails_then_warns(tmp_path: Path) -> None:
    site = package_copy(tmp_path, drop_probe=True)
    missing = str(tmp_path / "no-cc")
    built = doctor("--build", cwd=tmp_path, site=site, CC=missing, CXX=missing)
    assert built.returncode == 1, built.stdout + built.stderr
    assert built.stderr.count("\n") == 1 and "failed after" in built.stderr, built.stderr
    reason = f"no C++ compiler: {missing} (which compiles the probe) is not found"
    assert reason in lines(built)["probe"]
    assert built.stdout.splitlines()[-1].startswith("the probe's build failed (its line says why)")
    assert level(built, "compiler") == "warn"
    assert f"{missing} (not found) compiles" in lines(built)["compiler"]
    # The failure is remembered: a plain report warns with it and exits 0.
    later = doctor(cwd=tmp_path, site=site, CC=missing, CXX=missing)
    assert later.returncode == 0, later.stdout + later.stderr
    assert later.stderr == ""
    probe = lines(later)["probe"]
    assert probe.startswith("warn") and reason in probe and "remembered in" in probe


def test_doctor_build_switched_off_is_said_in_the_cache_line(tmp_path: Path) -> None:
    site = package_copy(tmp_path, drop_probe=True)
    done = doctor(cwd=tmp_path, site=site, TRACER_NO_PROBE_BUILD="1")
    assert done.returncode == 0
    assert "building the probe on first use is off ($TRACER_NO_PROBE_BUILD)" in done.stdout
    assert "$TRACER_NO_PROBE_BUILD turns building it on first use off" in lines(done)["probe"]


@pytest.mark.needs_extension("probe")
def test_doctor_probe_built_for_another_torch(tmp_path: Path) -> None:
    site = package_copy(tmp_path, drop_probe=False)
    built = probe_build.package_build()
    assert built is not None
    copy = site / "tracer" / "core" / built.name
    version = torch.__version__.encode()
    other = b"0" * len(version)  # the same length: the rest of the file stays in place
    data = copy.read_bytes()
    if data.count(version) != 1:
        pytest.skip("the torch version is not written once in the built probe")
    copy.write_bytes(data.replace(version, other))
    done = doctor(cwd=tmp_path, site=site, TRACER_NO_PROBE_BUILD="1")
    assert done.returncode == 0, done.stdout + done.stderr
    probe = lines(done)["probe"]
    assert probe.startswith("warn  probe     built for another torch: ImportError: "), probe
    assert f"was built against torch {other.decode()}, this is torch {torch.__version__}" in probe


def test_doctor_help_names_the_build_option(tmp_path: Path) -> None:
    done = doctor("--help", cwd=tmp_path)
    assert done.returncode == 0 and "--build" in done.stdout and "exit 1" in done.stdout
