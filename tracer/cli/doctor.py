"""``tracer doctor``: what this install can use, one line each (Python, torch, the compiled parts,
the compiler, the probe cache, the database, the PostgreSQL driver); ``--build`` builds the
compiled tensor probe now."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import click
from rich.text import Text

from tracer import __version__
from tracer.cli.base import out

OK, WARN, ERROR = "ok", "warn", "error"


@dataclass(frozen=True)
class Check:
    """One line of the report: its level (ok, warn, error), what it is about, and what was found."""

    level: str
    name: str
    text: str


@click.command("doctor")
@click.option(
    "--build",
    is_flag=True,
    help="Build the compiled tensor probe for the installed torch now (again after a failure).",
)
def doctor(build: bool) -> None:
    """Check what this install can use, one line each; exit 1 if something is broken.

    A missing optional part (the compiled kernel or probe, a compiler, the PostgreSQL driver)
    is a warning: tracing works without it, only slower or without that feature.
    """
    torch, torch_check = _torch()
    failed_build = False
    if build and torch is not None:
        failed_build = _build_probe()
    checks = [_python(), torch_check, _tracer()]
    probe_loaded = False
    if torch is not None:
        checks.append(_kernel())
        probe_check, probe_loaded = _probe()
        checks.append(probe_check)
    checks += [_compiler(needed=not probe_loaded), _cache(), _database(), _postgres()]
    width = max(len(c.name) for c in checks)
    for check in checks:
        line = f"{check.level:<5} {check.name:<{width}}  {check.text}"
        out.print(Text(line), soft_wrap=True)
    errors = [c.name for c in checks if c.level == ERROR]
    warnings = sum(c.level == WARN for c in checks)
    if errors:
        out.print(Text(f"broken: {', '.join(errors)}"))
    elif failed_build:
        out.print(Text("the probe's build failed (its line says why); tracing works without it"))
    else:
        out.print(Text("everything is usable" + (f" ({warnings} warning(s))" if warnings else "")))
    if errors or failed_build:
        raise click.exceptions.Exit(1)


def _build_probe() -> bool:
    """Build the probe now (its progress is one line on stderr); whether that failed."""
    from tracer.core import probe

    result = probe.build_now()
    return result is not None and result.module is None


def _where(module: ModuleType | None) -> str:
    """The folder or file a module was loaded from."""
    path = getattr(module, "__file__", None)
    return str(Path(path).parent if path and path.endswith("__init__.py") else path)


def _python() -> Check:
    return Check(OK, "python", f"{sys.version.split()[0]} ({sys.executable})")


def _tracer() -> Check:
    import tracer

    return Check(OK, "tracer", f"{__version__} ({_where(tracer)})")


def _torch() -> tuple[Any, Check]:
    try:
        import torch
    except Exception as exc:  # any failure to import torch leaves nothing to trace with
        return None, Check(ERROR, "torch", f"cannot be imported ({type(exc).__name__}: {exc})")
    return torch, Check(OK, "torch", f"{torch.__version__} ({_where(torch)})")


def _kernel() -> Check:
    from tracer.core import stats

    if stats.kernel_available():
        speedups = sys.modules.get("tracer.core._speedups")
        width = getattr(speedups, "width", None)
        bits = f", {width()}-bit pass" if callable(width) else ""
        return Check(OK, "kernel", f"tracer.core._speedups built ({_where(speedups)}){bits}")
    why = stats.KERNEL_MISSING or "not built"
    return Check(
        WARN,
        "kernel",
        f"tracer.core._speedups not built ({why}): statistics use torch's reductions (slower); "
        "reinstall layer-tracer with a C compiler to build it",
    )


def _probe() -> tuple[Check, bool]:
    """The probe's line, and whether it is loaded."""
    import torch

    from tracer.core import probe, probe_build

    status = probe.probe_status()
    if status.source in ("package", "cache"):
        return Check(OK, "probe", f"loaded from the {status.source} ({status.path})"), True
    other = "built for another torch: " if status.other_torch else "not built: "
    if status.source == "first use":
        place = probe_build.entry(torch.__version__)
        text = (
            f"{other}{status.reason}; the first trace builds it for torch {torch.__version__} "
            f"(about 30 s) into {place.directory}, or `tracer doctor --build` now"
        )
    else:
        text = f"{other}{status.reason}"
    return Check(WARN, "probe", text + " (tracing uses the slower Python probe meanwhile)"), False


def _compiler(needed: bool) -> Check:
    """The compiler a probe build would run; missing is a warning only while one is needed."""
    from tracer.core import probe_build

    found = probe_build.compilers()
    text = ", ".join(f"{program} ({path or 'not found'}) {role}" for role, program, path in found)
    if all(path is not None for _, _, path in found):
        version = _version_line(str(found[-1][2]))
        return Check(OK, "compiler", text + (f"; {version}" if version else ""))
    if not needed:
        return Check(OK, "compiler", text + "; not needed: the probe is loaded")
    return Check(WARN, "compiler", text + "; the probe cannot be built here")


def _version_line(program: str) -> str:
    """The first line of ``program --version``, or ""."""
    try:
        done = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout.strip().splitlines() or [""])[0]


def _cache() -> Check:
    """The probe cache: where it is, whether a build can be written there."""
    from tracer.core import probe_build

    root = probe_build.cache_root()
    source = f" (${probe_build.CACHE_ENV})" if os.environ.get(probe_build.CACHE_ENV) else ""
    off = ""
    if probe_build.build_disabled():
        off = f"; building the probe on first use is off (${probe_build.NO_BUILD_ENV})"
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing} is not a writable folder" if existing else "no folder above it exists"
        return Check(WARN, "cache", f"{root}{source}: not writable ({why}){off}")
    state = "writable" if existing == root else "created by the first build"
    return Check(OK, "cache", f"{root}{source} ({state}){off}")


def _database() -> Check:
    """The database tracer opens by default: ``$TRACER_DB``, else ``./tracer.db``."""
    from tracer.store import StoreError
    from tracer.store.engine import location, resolve_url, sqlite_file

    named = location(None)
    source = "$TRACER_DB" if os.environ.get("TRACER_DB") else "the default"
    try:
        url = resolve_url(None)
    except (StoreError, ValueError) as exc:
        return Check(ERROR, "database", f"{named} ({source}): {exc}")
    path = sqlite_file(url)
    if path is None:
        return _server(url, source)
    return _sqlite(path, f"{named} ({source}, {path.resolve()})")


def _server(url: Any, source: str) -> Check:
    """A database server (or an in-memory one): its dialect and driver must load here; the
    server itself is not contacted."""
    shown = url.render_as_string(hide_password=True)
    try:
        url.get_dialect().import_dbapi()
    except Exception as exc:  # SQLAlchemy's NoSuchModuleError, the driver's ImportError...
        why = f"{type(exc).__name__}: {exc}"
        return Check(ERROR, "database", f"{shown} ({source}): cannot be opened here ({why})")
    return Check(OK, "database", f"{shown} ({source}; not contacted, its driver loads)")


def _sqlite(path: Path, shown: str) -> Check:
    """A SQLite file: writable if it exists, else its folder must take a new file."""
    from tracer.store.migrate import writable

    if path.is_dir():
        return Check(ERROR, "database", f"{shown}: a folder, not a database file")
    if path.exists():
        if writable(path):
            return Check(OK, "database", f"{shown}: writable")
        return Check(ERROR, "database", f"{shown}: not writable (runs cannot be recorded)")
    folder = path.parent
    if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return Check(OK, "database", f"{shown}: not created yet, its folder is writable")
    return Check(ERROR, "database", f"{shown}: {folder} is not a writable folder")


def _postgres() -> Check:
    """The PostgreSQL driver (optional: SQLite needs none)."""
    try:
        import psycopg
    except ImportError as exc:
        return Check(
            WARN,
            "postgres",
            f"driver psycopg not installed ({exc}); pip install 'layer-tracer[postgres]' "
            "to record into PostgreSQL",
        )
    return Check(OK, "postgres", f"driver psycopg {psycopg.__version__} ({_where(psycopg)})")
