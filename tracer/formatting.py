"""Numbers, durations, counts and times as the CLI and the TUI both print them (no torch).

One style per quantity; a table cell where width is scarce asks for the ``"compact"`` style by
name, never a format of its own:

- a statistic or metric value: ``-0.0004351`` (4 significant digits), compact ``-0.00044``;
- a parameter count: ``1,114,112``, compact ``1.11M``;
- a point in time: ``2026-11-26 10:42:03``, compact ``10:42:03`` (today) or ``2026-11-26 10:42``.

A duration has one style: ``0.4s``, ``8.3s``, ``31s``, ``1m12s``, ``2h05m``.

Strings a user or a database supplied go through :func:`literal` (control characters written
out, cut with an ellipsis); shapes through :func:`format_shape`. ``tracer.records`` re-exports
both, with :func:`dimension_names`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

Style = Literal["full", "compact"]

#: What a missing value reads as, in every table.
MISSING = "-"
#: Significant digits of a value per style.
DIGITS: dict[str, int] = {"full": 4, "compact": 2}
#: An integer-valued float below this is written whole (``30000``, not ``3e+04``), per style.
WHOLE_BELOW: dict[str, float] = {"full": 1e9, "compact": 1e5}


def number(value: float | None, style: Style = "full") -> str:
    """A statistic or metric: ``0.4132``, ``-0.0004351``, ``1.234e-05``, ``30000``, ``nan``,
    ``-inf``; ``-`` when missing."""
    if value is None:
        return MISSING
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < WHOLE_BELOW[style]:
        return str(int(value))
    return f"{value:.{DIGITS[style]}g}"


def count(value: int | None, style: Style = "full") -> str:
    """A parameter (or any) count: ``3,313,313`` in full, ``3.31M`` / ``295k`` / ``513``
    compact; ``-`` when missing."""
    if value is None:
        return MISSING
    if style == "full":
        return f"{value:,}"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return str(value)


def duration(seconds: float | None) -> str:
    """A duration: ``0.4s``, ``8.3s`` (tenths below ten seconds), ``31s``, ``1m12s``,
    ``2h05m``; ``-`` when missing."""
    if seconds is None:
        return MISSING
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def timestamp(stamp: float | None, style: Style = "full") -> str:
    """A local time: ``2026-11-26 10:42:03`` in full; compact, ``10:42:03`` today and
    ``2026-11-26 10:42`` on another day; ``-`` when missing."""
    if stamp is None:
        return MISSING
    local = time.localtime(stamp)
    if style == "full":
        return time.strftime("%Y-%m-%d %H:%M:%S", local)
    if local[:3] == time.localtime()[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


def format_shape(shape: tuple[int, ...], names: Mapping[int, str] | None = None) -> str:
    """Render a shape as ``(50, 200, 512)``; with ``names`` as ``(batch_size, seq_length, ...)``.

    ``names`` maps a dimension size to the config key it equals (see :func:`dimension_names`);
    sizes without a name stay numbers. A 1-tuple keeps Python's trailing comma: ``(50,)``.
    """
    parts = [names.get(d, str(d)) if names else str(d) for d in shape]
    if len(parts) == 1:
        return f"({parts[0]},)"
    return "(" + ", ".join(parts) + ")"


def dimension_names(config: Mapping[str, Any]) -> dict[int, str]:
    """Map each integer config value above 1 to its key, for labelling dimensions.

    When two keys share a value the first one in the config wins, so the mapping is
    deterministic; booleans and values 0 and 1 are ignored (too common to be meaningful).
    """
    names: dict[int, str] = {}
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 1:
            continue
        names.setdefault(value, key)
    return names


# C0 controls, DEL, C1 controls and the Unicode line and paragraph separators: each of them
# can move the cursor, recolour or clear a terminal, or break a table row.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
ELLIPSIS = "…"


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def literal(value: object, limit: int | None = None) -> str:
    """``value`` as text safe for a terminal: control characters written out (``\\x1b``,
    ``\\n``), and cut to ``limit`` characters with an ellipsis when longer.

    Every string a user or a database supplies goes through this before it is shown; markup
    is never parsed from it (the CLI and the TUI wrap it in a rich ``Text``). Linear in the
    length: only the first ``limit`` characters are looked at when there is a limit.
    """
    text = value if isinstance(value, str) else str(value)
    if limit is None:
        return _CONTROL.sub(_escaped, text)
    shown = _CONTROL.sub(_escaped, text[: limit + 1])
    if len(shown) > limit:
        return shown[: max(limit - 1, 0)] + ELLIPSIS
    return shown
