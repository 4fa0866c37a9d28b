"""Column limits: what PostgreSQL enforces, enforced the same way on every backend.

The limits come from the column types in :mod:`tracer.store.schema` (``String(200)`` is 200
characters, ``Integer`` a 32-bit integer, ``BigInteger`` a 64-bit one); a ``Text`` column's cap
is its ``info["max_chars"]``, and a JSON column's caps per key and per item sit there too.
SQLite would store any of these values, but then a run recorded on SQLite could not be
imported into PostgreSQL: so every backend refuses them, with the field, the size and the limit.

The hot path (one traced step) checks each distinct string once per writer: a step's strings
are mostly the same objects every step, so after the first step the check is a few set
differences.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, SmallInteger, String, Table

from tracer.store.errors import LimitError
from tracer.store.schema import Base

INT2 = (-(2**15), 2**15 - 1)
INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)
#: How many checked strings a column remembers before it starts over.
MAX_SEEN = 100_000
#: How many characters of an offending value an error message shows.
SHOWN = 40

#: What the user calls a column (the rest are named ``table.column``).
LABELS = {
    "runs.name": "run name",
    "runs.pipeline": "pipeline name",
    "runs.config": "config",
    "runs.tags": "tags",
    "runs.seed": "seed",
    "runs.device": "device",
    "runs.group_id": "group id",
    "runs.command": "command line",
    "metrics.name": "metric name",
    "metrics.step": "step",
    "calls.step": "step",
    "extra_stats.name": "statistic name",
    "modules.path": "module path",
    "calls.module": "module path",
    "calls.type": "module type",
    "tensors.slot": "tensor slot",
}


class ColumnLimit:
    """The limit of one column: a maximum length in characters, or an integer range."""

    __slots__ = ("field", "int_range", "label", "max_chars", "text")

    def __init__(self, column: Column[Any]) -> None:
        self.field = f"{column.table.name}.{column.name}"
        self.label = LABELS.get(self.field, self.field)
        kind = column.type
        self.max_chars: int | None = None
        self.int_range: tuple[int, int] | None = None
        self.text = isinstance(kind, String)
        if isinstance(kind, String):
            self.max_chars = kind.length or column.info.get("max_chars")
        elif isinstance(kind, BigInteger):
            self.int_range = INT8
        elif isinstance(kind, SmallInteger):
            self.int_range = INT2
        elif isinstance(kind, Integer):
            self.int_range = INT4

    def check(self, value: Any) -> None:
        """Raise LimitError when ``value`` does not fit this column (None always fits)."""
        if value is None:
            return
        if isinstance(value, str):
            check_text(self.label, value, self.max_chars, self.field)
        elif self.int_range is not None and isinstance(value, int):
            check_int(self.label, value, self.int_range, self.field)


def _table_limits(table: Table) -> dict[str, ColumnLimit]:
    return {column.name: ColumnLimit(column) for column in table.columns}


#: Every table's column limits, by table name then column name.
LIMITS: dict[str, dict[str, ColumnLimit]] = {
    name: _table_limits(table)  # type: ignore[arg-type]
    for name, table in Base.metadata.tables.items()
}


def shown(value: str) -> str:
    """The start of a value, quoted, for an error message."""
    return repr(value if len(value) <= SHOWN else value[:SHOWN] + "…")


def check_text(label: str, value: str, max_chars: int | None, field: str = "") -> None:
    """Refuse a string that is too long, holds a NUL character or is not valid Unicode."""
    where = f" ({field})" if field and field != label else ""
    if max_chars is not None and len(value) > max_chars:
        raise LimitError(
            f"{label} {shown(value)} is {len(value):,} characters long; "
            f"the limit is {max_chars:,}{where}"
        )
    if "\x00" in value:
        raise LimitError(
            f"{label} {shown(value)} contains a NUL character (\\x00), "
            f"which PostgreSQL cannot store in text{where}"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LimitError(
                f"{label} {shown(value)} is not valid Unicode text (a lone surrogate){where}"
            ) from None


def clip_text(value: str, max_chars: int | None) -> str:
    """Text that any backend stores: NUL and lone surrogates escaped, cut to ``max_chars``."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if max_chars is not None and len(value) > max_chars:
        value = value[: max_chars - 1] + "…"
    return value


def check_int(label: str, value: int, bounds: tuple[int, int], field: str = "") -> None:
    """Refuse an integer outside the column's range."""
    low, high = bounds
    if not low <= value <= high:
        where = f" ({field})" if field and field != label else ""
        raise LimitError(
            f"{label} {value} is outside the range the database stores ({low:,} to {high:,}){where}"
        )


def check_values(table: str, values: Mapping[str, Any]) -> None:
    """Check a row given as a column -> value mapping."""
    limits = LIMITS[table]
    for name, value in values.items():
        limits[name].check(value)


def check_json_column(table: str, column: str, value: Mapping[str, Any] | None) -> str:
    """Check a JSON object column's keys, items and whole text; return the encoded text."""
    limit = LIMITS[table][column]
    info = Base.metadata.tables[table].c[column].info
    items = dict(value or {})
    key_chars, item_chars = info.get("key_chars"), info.get("item_chars")
    for key, item in items.items():
        check_text(f"{limit.label} key", str(key), key_chars, limit.field)
        text = item if isinstance(item, str) else json.dumps(item, default=str)
        if item_chars is not None and len(text) > item_chars:
            raise LimitError(
                f"{limit.label} value of {str(key)!r} is {len(text):,} characters long; "
                f"the limit is {item_chars:,} ({limit.field})"
            )
    encoded = json.dumps(items, default=str)
    if limit.max_chars is not None and len(encoded) > limit.max_chars:
        raise LimitError(
            f"{limit.label} is {len(encoded):,} characters long as JSON; "
            f"the limit is {limit.max_chars:,} ({limit.field})"
        )
    return encoded


class SeenStrings:
    """The strings already checked per column, so a step's repeated strings are checked once."""

    def __init__(self) -> None:
        self._ok: dict[str, set[str]] = {}

    def check_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Check the string columns of row tuples laid out as ``columns``."""
        if not rows:
            return
        limits = LIMITS[table]
        for i, name in enumerate(columns):
            limit = limits[name]
            if not limit.text:
                continue  # keys and counters are checked where they come from (the step)
            self._check_new(limit, map(itemgetter(i), rows))

    def check_strings(self, table: str, column: str, values: Iterable[Any]) -> None:
        """Check the values of one column."""
        self._check_new(LIMITS[table][column], values)

    def _check_new(self, limit: ColumnLimit, values: Iterable[Any]) -> None:
        ok = self._ok.setdefault(limit.field, set())
        if len(ok) > MAX_SEEN:
            ok.clear()  # strings that differ every step: keep the memory bounded
        new = set(values)
        new.difference_update(ok)
        if not new:
            return
        for value in new:
            if isinstance(value, str):
                check_text(limit.label, value, limit.max_chars, limit.field)
        ok.update(value for value in new if isinstance(value, str))
