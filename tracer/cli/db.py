"""``tracer db``: the database itself (``tracer db check``: is a SQLite file damaged?)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.text import Text

from tracer.cli.base import common, out


@click.group("db")
def db_group() -> None:
    """Look after the database itself."""


@db_group.command("check")
@click.option(
    "--thorough",
    is_flag=True,
    help="SQLite's integrity_check: also compare every index with its table (about 3x slower).",
)
@common
def check(thorough: bool, db: str | None) -> None:
    """Check every page of a SQLite database for damage (SQLite's quick_check); exit 1 if any.

    Nothing is written. A store runs this check by itself before writing into a file of up
    to 64 MB; on bigger files it runs only the check of the small tables.
    """
    path = _sqlite_path(db)
    mode = _read_mode(path)
    pragma = "integrity_check" if thorough else "quick_check"
    from tracer.store import health

    started = time.perf_counter()
    found = health.problems(path, full=True, thorough=thorough, mode=mode)
    took = time.perf_counter() - started
    size = path.stat().st_size / 2**20
    if not found:
        out.print(Text(f"ok: {path} ({size:,.1f} MB, {pragma} of every page in {took:.2f} s)"))
        return
    out.print(Text(f"damaged: {path} ({pragma} found {len(found)} problem(s)):"))
    for line in found:
        out.print(Text(f"  {line}"))
    raise click.exceptions.Exit(1)


def _sqlite_path(db: str | None) -> Path:
    """The SQLite file ``--db`` names; a clear error for a server or a missing file."""
    from tracer.store.engine import location, resolve_url, sqlite_file

    path = sqlite_file(resolve_url(db))
    if path is None:
        raise click.ClickException(
            f"tracer db check checks SQLite files; {location(db)} is not one "
            "(a database server checks its own storage)"
        )
    if not path.exists():
        raise click.ClickException(f"no database at {path}")
    if path.is_dir():
        raise click.ClickException(f"{path} is a directory, not a database file")
    return path


def _read_mode(path: Path) -> str:
    """Open read-only; immutable where read-only storage leaves no other way."""
    from tracer.store.migrate import writable

    if writable(path):
        return "ro"
    from tracer.store.engine import read_only_mode

    return read_only_mode(path)
