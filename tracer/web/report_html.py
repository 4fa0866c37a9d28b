"""The report's HTML building blocks: escaped text, numbers, shapes and plain tables.

Every string a user, a plugin or the database supplied reaches the page through :func:`esc`
(control characters written out as :func:`tracer.formatting.literal` does, then HTML-escaped),
so a run named ``<script>alert(1)</script>`` reads as those characters and runs nothing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from tracer.formatting import count, literal, number
from tracer.records import TensorRecord

#: A table cell: escaped HTML, or escaped HTML with the cell's class.
Cell = str | tuple[str, str]

#: Longest user string shown in a table cell; a longer one ends in an ellipsis.
CELL_LIMIT = 160
#: Longest user string shown on its own line (a command, an error, a config value).
LINE_LIMIT = 2000


def esc(value: object, limit: int | None = CELL_LIMIT) -> str:
    """``value`` as safe HTML text: control characters written out, markup escaped."""
    return html.escape(literal(value, limit), quote=True)


def num(value: float | None) -> str:
    """A statistic as the CLI prints it (``0.4132``, ``nan``, ``-``), ready for HTML."""
    return esc(number(value))


def cnt(value: int | None) -> str:
    """A count with thousands separators (``1,114,112``)."""
    return esc(count(value))


def shape(record: TensorRecord | None) -> str:
    """A tensor's shape (``(50, 200, 512)``) or an opaque object's type name."""
    return esc(record.shape_text()) if record is not None else "-"


def tag(name: str, body: str, cls: str = "", **attrs: str) -> str:
    """``<name class="cls" k="v">body</name>``; ``body`` and ``attrs`` must be escaped already."""
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{v}"' for k, v in attrs.items())
    klass = f' class="{cls}"' if cls else ""
    return f"<{name}{klass}{extra}>{body}</{name}>"


def table(
    head: Sequence[str],
    rows: Iterable[str],
    cls: str = "",
    numeric: Sequence[int] = (),
    id_: str = "",
) -> str:
    """A table: ``head`` are escaped header cells, ``rows`` whole ``<tr>`` strings;
    columns at ``numeric`` are right-aligned."""
    cells = "".join(
        tag("th", h, "num" if i in numeric else "", scope="col") for i, h in enumerate(head)
    )
    attrs = {"id": id_} if id_ else {}
    body = tag("thead", tag("tr", cells)) + tag("tbody", "".join(rows))
    return tag("div", tag("table", body, cls, **attrs), "scroll")


def row(cells: Iterable[Cell], cls: str = "", **attrs: str) -> str:
    """A ``<tr>`` of ``<td>`` cells (already escaped); a cell given as ``(html, cls)`` gets
    that class."""
    out = []
    for cell in cells:
        if isinstance(cell, tuple):
            out.append(tag("td", cell[0], cell[1]))
        else:
            out.append(tag("td", cell))
    return tag("tr", "".join(out), cls, **attrs)


def definitions(pairs: Iterable[tuple[str, str]]) -> str:
    """A ``<dl>`` of (escaped term, escaped value) pairs; pairs whose value is ``-`` are
    left out."""
    items = "".join(tag("dt", k) + tag("dd", v) for k, v in pairs if v not in ("", "-"))
    return tag("dl", items, "facts")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 layer``, ``3 layers`` (with thousands separators)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
