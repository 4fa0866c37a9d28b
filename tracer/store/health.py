"""Is a SQLite file damaged? SQLite's own checks, at a cost that depends on the file's size.

``PRAGMA quick_check`` reads every page: on a 1 GB tracer database it took 2.8 s with the file
in the page cache on an idle machine, 6.4 s on a busy one and 20 s from disk
(``integrity_check``: 8.5 s warm). That is too much before every run, so before its first write
a store runs the full ``quick_check`` on files up to :data:`FULL_CHECK_MAX_BYTES` and, on
bigger ones, the cheap part: the check of the small tables every write touches (``runs``,
``modules``, ``metrics``: 0.5 ms on the 1 GB file) and the page count against the file's size.
Any write that meets a damaged page marks the store damaged, and it writes nothing more.
``tracer db check`` runs the full check on any size.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tracer.store.engine import sqlite_uri, wait_timeout
from tracer.store.errors import sqlite_meaning

#: Files up to this size get the full quick_check before their first write (0.2 s to 1.3 s).
FULL_CHECK_MAX_BYTES = 64 * 2**20
#: The tables every run's writes touch, small next to calls and tensors.
SMALL_TABLES = ("runs", "modules", "metrics")
#: At most this many problems are listed.
MAX_PROBLEMS = 20


def problems(
    path: Path, *, full: bool | None = None, thorough: bool = False, mode: str = "ro"
) -> list[str]:
    """What SQLite finds wrong with the file ([] when nothing).

    ``full`` None: the whole quick_check when the file is small, else the cheap part;
    ``thorough``: ``integrity_check`` (also compares every index with its table).
    """
    if full is None:
        full = path.stat().st_size <= FULL_CHECK_MAX_BYTES
    pragma = "integrity_check" if thorough else "quick_check"
    try:
        conn = sqlite3.connect(sqlite_uri(path, mode), uri=True, timeout=wait_timeout())
        try:
            if full:
                return _rows(conn, f"PRAGMA {pragma}({MAX_PROBLEMS})")
            found = _size_problems(conn, path)
            for table in SMALL_TABLES:
                found += _rows(conn, f"PRAGMA {pragma}({table})")
            return found
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [sqlite_meaning(exc)]


def _rows(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [str(row[0]) for row in conn.execute(sql) if row[0] != "ok"]


def _size_problems(conn: sqlite3.Connection, path: Path) -> list[str]:
    """A file shorter than its page count says lost its end (unless the pages sit in the WAL)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    size = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    in_wal = wal.stat().st_size if wal.exists() else 0
    if page_size * page_count > size + in_wal:
        return [
            f"the file is {size:,} bytes but its header counts {page_count:,} pages of {page_size}"
        ]
    return []
