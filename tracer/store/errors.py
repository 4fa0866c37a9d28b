"""The store's own errors: every driver or schema problem surfaces as one of these."""

from __future__ import annotations

import sqlite3


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class RunNotFound(StoreError, LookupError):
    """No run matches the given id, name or reference."""


class SchemaError(StoreError):
    """The database is not a tracer database, has a newer schema, or is corrupt."""


class DamagedError(SchemaError):
    """The database file is damaged: the store refuses to write into it."""


class ReadOnlyError(StoreError):
    """The database can be read but not written (read-only storage, file or server)."""


class LimitError(StoreError, ValueError):
    """A value does not fit its column (too long, a NUL byte, an integer out of range)."""


class ServerTimeout(StoreError, TimeoutError):
    """The database server did not answer in time."""


#: SQLite's primary result codes (the low byte of the extended code) and what they truly mean.
_SQLITE_MEANING = {
    "SQLITE_FULL": "the disk is full (database or disk is full)",
    "SQLITE_BUSY": "the database is locked by another process (gave up waiting)",
    "SQLITE_LOCKED": "the database is locked by another connection",
    "SQLITE_READONLY": "the database is read-only here",
    "SQLITE_CORRUPT": "the database file is damaged (database disk image is malformed)",
    "SQLITE_NOTADB": "the file is not a SQLite database",
    "SQLITE_CANTOPEN": "the file cannot be opened (missing, a directory, or no permission)",
    "SQLITE_PERM": "permission denied",
    "SQLITE_IOERR": "a disk I/O error",
    "SQLITE_AUTH": "access denied",
}


def sqlite_code(exc: BaseException) -> str | None:
    """SQLite's primary error name (``SQLITE_FULL``) of a driver error, if it is one."""
    name = getattr(exc, "sqlite_errorname", None)
    if not isinstance(name, str):
        return None
    for primary in _SQLITE_MEANING:
        if name == primary or name.startswith(primary + "_"):
            return primary
    return name


def sqlite_meaning(exc: sqlite3.Error) -> str:
    """What a SQLite error means, in words, with SQLite's own text when it adds something."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = sqlite_code(exc)
    meaning = _SQLITE_MEANING.get(code or "")
    if meaning is None:
        return text
    if text in meaning:
        return meaning
    return f"{meaning}: {text}"


#: What PostgreSQL's (libpq's) connection errors mean, by a phrase of their text.
_SERVER_MEANING = (
    ("server closed the connection", "the database server closed the connection (stopped?)"),
    ("terminating connection", "the database server ended the connection (shut down?)"),
    ("connection refused", "no database server answers there (connection refused)"),
    ("connection timeout expired", "the database server did not accept the connection in time"),
    ("statement timeout", "the statement ran past the server's statement_timeout"),
    ("the database system is shutting down", "the database server is shutting down"),
    ("the database system is starting up", "the database server is still starting up"),
    ("read-only transaction", "the database server only allows reading"),
)


def server_meaning(text: str) -> str:
    """What a database server's error text means, the server's own first line kept."""
    first = text.strip().splitlines()[0] if text.strip() else "no details"
    lowered = first.lower()
    for phrase, meaning in _SERVER_MEANING:
        if phrase in lowered:
            return f"{meaning}: {first}"
    return first
