"""Turning record values into short, literal strings for table cells (no Textual imports)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from tracer.records import format_shape, literal

_BARS = "▁▂▃▄▅▆▇█"
MISSING = "-"
#: Longer cells end in an ellipsis (a name written straight into a database can be any size).
CELL_LIMIT = 120
#: A longer name in a title line (a run's name above its flow) ends in an ellipsis.
TITLE_LIMIT = 80


def cell(value: object, limit: int = CELL_LIMIT) -> str:
    """A user- or database-supplied string for a cell: control characters written out
    (``\\x1b``), cut with an ellipsis beyond ``limit``; wrap it in a ``Text``, never markup."""
    return literal(value, limit)


def number(value: float | None, digits: int = 3) -> str:
    """A compact number: ``0.0123``, ``1.2e-05``, ``nan``, ``-`` for None."""
    if value is None:
        return MISSING
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.1e}"
    if magnitude >= 10**digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def count(value: int | None) -> str:
    """A parameter count: ``513``, ``295k``, ``1.11M``."""
    if value is None:
        return MISSING
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            scaled = value / limit
            return f"{scaled:.3g}{suffix}"
    return str(value)


def duration(seconds: float | None) -> str:
    """A duration: ``0.4s``, ``31s``, ``1m12s``, ``2h05m``; ``…`` for unknown."""
    if seconds is None:
        return "…"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def clock(stamp: float | None) -> str:
    """A start time: ``10:42:03`` today, ``2026-11-26 10:42`` on another day."""
    if stamp is None:
        return MISSING
    local = time.localtime(stamp)
    today = time.localtime()
    if local[:3] == today[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


def when(stamp: float | None) -> str:
    """A full local timestamp for provenance: ``2026-11-26 10:42:03``."""
    if stamp is None:
        return MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def shape(dims: tuple[int, ...], names: Mapping[int, str] | None = None) -> str:
    """A tensor shape, dimensions optionally named from the run's config."""
    return format_shape(tuple(dims), names)


def config_value(value: object) -> str:
    """A config value as the user wrote it (strings unquoted, missing as ``-``)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return number(value, 4)
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
