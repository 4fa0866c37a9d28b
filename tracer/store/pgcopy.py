"""A traced step's rows into PostgreSQL by binary COPY (psycopg 3), types read from schema.py.

Binary COPY sends each value in the server's own binary format, so the client must name every
column's type, and it trusts those types: an ``int4`` past 2**31 wraps around silently instead
of failing. The types therefore come from the ``Table`` objects of :mod:`tracer.store.schema`
(their one definition), and the writer checks every integer column's range before a row is sent
(:func:`tracer.store.writer.check_int_columns`). COPY runs on the SQLAlchemy connection's own
psycopg connection, inside the step's transaction: a writer that dies mid-COPY leaves nothing
of that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.types import TypeEngine

from tracer.store.engine import watchdog_of
from tracer.store.errors import LimitError
from tracer.store.schema import Base

#: PostgreSQL's binary type for each SQLAlchemy type of the schema; the first match wins, so a
#: subclass (BigInteger of Integer, Text of String) comes before its base.
BINARY_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (Boolean, "bool"),
    (BigInteger, "int8"),
    (SmallInteger, "int2"),
    (Integer, "int4"),
    (Float, "float8"),
    (Text, "text"),
    (String, "varchar"),
)
#: A ``Float(p)`` with a precision up to this is PostgreSQL's ``real`` (float4).
REAL_PRECISION = 24
#: Python types each binary type's dumper accepts (a bool is an int; an int is a float).
ACCEPTED: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int2": (int,),
    "int4": (int,),
    "int8": (int,),
    "float4": (float, int),
    "float8": (float, int),
    "text": (str,),
    "varchar": (str,),
}


def binary_type(kind: TypeEngine[Any]) -> str:
    """The PostgreSQL binary type of a column type (its PostgreSQL variant, if it has one)."""
    # the declared type, not dialect_impl(): that one turns Text into a plain String
    kind = getattr(kind, "_variant_mapping", {}).get("postgresql", kind)
    for base, name in BINARY_TYPES:
        if isinstance(kind, base):
            if name == "float8" and (getattr(kind, "precision", None) or 53) <= REAL_PRECISION:
                return "float4"
            return name
    raise TypeError(f"no binary COPY type for {kind!r}: add it to tracer.store.pgcopy")


@dataclass(frozen=True)
class CopyLayout:
    """One table's COPY: its columns in row-tuple order and their binary types."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]

    @property
    def sql(self) -> str:
        """The COPY statement."""
        return f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN (FORMAT BINARY)"


@cache
def layout(table: str, row_columns: tuple[str, ...]) -> CopyLayout:
    """The COPY layout of ``table`` for row tuples laid out as ``row_columns``.

    Columns and types come from the Table; the tuples must hold every one of its columns, so a
    column added to the schema but not to the rows fails here rather than being left NULL.
    """
    found: Table = Base.metadata.tables[table]  # type: ignore[assignment]
    names = tuple(found.columns.keys())
    if sorted(names) != sorted(row_columns):
        raise RuntimeError(
            f"the {table} rows hold {', '.join(row_columns)} but the table has "
            f"{', '.join(names)}: tracer.store.rows and tracer.store.schema disagree"
        )
    types = tuple(binary_type(found.columns[name].type) for name in row_columns)
    return CopyLayout(table, row_columns, types)


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Any]) -> None:
    """Write row tuples into ``table`` by binary COPY, inside ``conn``'s transaction.

    The rows must have been checked against the column limits already (integer ranges
    included). A driver error comes out as SQLAlchemy's DBAPIError (what the Store turns into
    a StoreError); a value of the wrong Python type as LimitError naming its column.
    """
    if not rows:
        return
    plan = layout(table, tuple(columns))
    fairy = conn.connection
    driver = fairy.driver_connection
    dbapi = fairy.dbapi_connection
    watchdog = watchdog_of(conn.engine)  # SQLAlchemy's statement events do not see COPY
    if watchdog is not None:
        watchdog.arm(dbapi)
    try:
        with driver.cursor() as cursor, cursor.copy(plan.sql) as copy:  # type: ignore[union-attr]
            copy.set_types(list(plan.types))
            write = copy.write_row
            for row in rows:
                write(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, plan.sql, exc) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise LimitError(misfit(plan, rows, exc)) from None
    finally:
        if watchdog is not None:
            watchdog.disarm(dbapi)


def _wrapped(conn: Connection, sql: str, exc: Any) -> StatementError:
    """The driver's error as SQLAlchemy would have raised it; a lost connection is invalidated."""
    lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
    if lost:
        conn.invalidate(exc)
    return DBAPIError.instance(
        sql,
        None,
        exc,
        conn.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )


def misfit(plan: CopyLayout, rows: Sequence[Any], exc: Exception) -> str:
    """Name the first value whose Python type its column's binary type cannot take."""
    for row in rows:
        for name, kind, value in zip(plan.columns, plan.types, row, strict=False):
            if value is not None and not isinstance(value, ACCEPTED.get(kind, (object,))):
                return f"{plan.table}.{name} cannot store {value!r} ({type(value).__name__})"
    return f"a {plan.table} row does not fit its columns ({exc})"
