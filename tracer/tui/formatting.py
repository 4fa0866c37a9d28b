"""Turning record values into short, literal strings for table cells (no Textual imports)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tracer import formatting
from tracer.records import format_shape, literal

_BARS = "▁▂▃▄▅▆▇█"
MISSING = formatting.MISSING
#: Longer cells end in an ellipsis (a name written straight into a database can be any size).
CELL_LIMIT = 120
#: A longer name in a title line (a run's name above its flow) ends in an ellipsis.
TITLE_LIMIT = 80


def cell(value: object, limit: int = CELL_LIMIT) -> str:
    """A user- or database-supplied string for a cell: control characters written out
    (``\\x1b``), cut with an ellipsis beyond ``limit``; wrap it in a ``Text``, never markup."""
    return literal(value, limit)


# The shared formatting (``tracer.formatting``): the same quantity reads the same in the CLI.
number = formatting.number
count = formatting.count
duration = formatting.duration


def clock(stamp: float | None) -> str:
    """A start time in a table cell: ``10:42:03`` today, ``2026-11-26 10:42`` on another day."""
    return formatting.timestamp(stamp, "compact")


def when(stamp: float | None) -> str:
    """A full local timestamp for provenance: ``2026-11-26 10:42:03``."""
    return formatting.timestamp(stamp)


def shape(dims: tuple[int, ...], names: Mapping[int, str] | None = None) -> str:
    """A tensor shape, dimensions optionally named from the run's config."""
    return format_shape(tuple(dims), names)


def config_value(value: object) -> str:
    """A config value as the user wrote it (strings unquoted, missing as ``-``)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return number(value)
    return cell(value)


def sparkline(values: Sequence[float | None], width: int) -> str:
    """Values resampled to ``width`` columns of block characters; gaps (None, NaN) as spaces."""
    if not values or width <= 0:
        return ""
    columns = _resample(values, width)
    finite = [v for v in columns if v is not None]
    if not finite:
        return " " * len(columns)
    low, high = min(finite), max(finite)
    span = high - low
    out = []
    for v in columns:
        if v is None:
            out.append(" ")
        elif span == 0:
            out.append(_BARS[0] if v == 0 else _BARS[len(_BARS) // 2 - 1])
        else:
            out.append(_BARS[min(int((v - low) / span * len(_BARS)), len(_BARS) - 1)])
    return "".join(out)


def _resample(values: Sequence[float | None], width: int) -> list[float | None]:
    """``width`` evenly spaced values; fewer values than columns are stretched to fill them."""
    clean = [None if v is None or not math.isfinite(v) else float(v) for v in values]
    return [clean[int(i * len(clean) / width)] for i in range(width)]


_DTYPE_SHORT = {"float": "f", "bfloat": "bf", "int": "i", "uint": "u", "complex": "c"}


def dtype_short(dtype: str) -> str:
    """``float32`` -> ``f32``, ``bfloat16`` -> ``bf16``, ``int64`` -> ``i64``; others unchanged."""
    for prefix in sorted(_DTYPE_SHORT, key=len, reverse=True):
        rest = dtype[len(prefix) :]
        if dtype.startswith(prefix) and rest.isdigit():
            return _DTYPE_SHORT[prefix] + rest
    return dtype


_COLUMN = " ▁▂▃▄▅▆▇█"


def chart(values: Sequence[float | None], width: int, height: int) -> list[str]:
    """A bar chart ``height`` lines tall (top line first), one column per resampled value."""
    if not values or width <= 0 or height <= 0:
        return []
    columns = _resample(values, width)
    finite = [v for v in columns if v is not None]
    if not finite:
        return [" " * len(columns)] * height
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    # the lowest value keeps a sliver, so a flat curve still shows as a line
    levels = [
        None if v is None else 1 + round((v - low) / span * (height * 8 - 1)) for v in columns
    ]
    lines = []
    for row in range(height - 1, -1, -1):
        base = row * 8
        lines.append(
            "".join(" " if lv is None else _COLUMN[min(max(lv - base, 0), 8)] for lv in levels)
        )
    return lines
