"""Storing NaN, +Inf and -Inf exactly: SQLite turns NaN into NULL, so non-finite values are
written as NULL plus a 2-bit code in the row's ``special`` column, on every backend alike.

Code 0 means "the column holds the value (or NULL for a statistic that is absent)", 1 NaN,
2 +Inf, 3 -Inf. Value ``i`` of a row uses bits ``2*i`` and ``2*i + 1``: the ``tensors`` row's
mask covers ``schema.STAT_COLUMNS`` in their order, which is why a new column goes at the end
and why at most ``schema.MAX_STAT_COLUMNS`` fit the 32-bit signed column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

NAN, POS_INF, NEG_INF = 1, 2, 3
_DECODE = (None, math.nan, math.inf, -math.inf)


def encode(value: float | None) -> tuple[float | None, int]:
    """Split one value into (column value, code)."""
    if value is None or math.isfinite(value):
        return value, 0
    if value != value:  # NaN is the only value unequal to itself
        return None, NAN
    return None, POS_INF if value > 0 else NEG_INF


def encode_many(values: Sequence[float | None]) -> tuple[list[float | None], int]:
    """Encode a row of values into column values and one combined ``special`` mask."""
    out: list[float | None] = list(values)
    mask = 0
    for i, value in enumerate(values):
        if value is not None and not math.isfinite(value):
            column, code = encode(value)
            out[i] = column
            mask |= code << (2 * i)
    return out, mask


def decode(value: float | None, special: int, index: int = 0) -> float | None:
    """Rebuild value ``index`` of a row from its column value and the row's mask."""
    code = (special >> (2 * index)) & 3 if special else 0
    if code:
        return _DECODE[code]
    return value
