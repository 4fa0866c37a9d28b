"""``tracer.summary()``: one traced forward printed as a table (torchinfo's habit, with values)."""

from __future__ import annotations

import builtins
import gc
import io
import os
import sys
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import starmap, zip_longest
from typing import IO, Any, NamedTuple, TypeVar

import rich.console
import torch
from rich.cells import cell_len
from rich.console import COLOR_SYSTEMS, Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from torch import nn

from tracer import formatting
from tracer.api import trace
from tracer.records import CallRecord, ModuleRecord, TensorRecord, format_shape, literal


class Summary:
    """The records of one forward and their table: ``print(s)``, ``s.calls``, ``s.total_params``."""

    def __init__(
        self, calls: Sequence[CallRecord], modules: Sequence[ModuleRecord], notes: Sequence[str]
    ) -> None:
        """``modules``: the model's module records, or a trace's captured ones (whose parameter
        counts the table reads without building the records: see :attr:`modules`)."""
        self.calls = list(calls)
        self.notes = list(notes)
        self._captured = modules
        self._modules: list[ModuleRecord] | None = None
        counts = getattr(modules, "counts", None)
        if callable(counts):
            self._own, (total, trainable) = counts()
        else:
            self._modules = list(modules)
            self._own = {m.path: m.params_own for m in self._modules}
            root = next((m for m in self._modules if m.path == ""), None)
            total, trainable = (root.params_total, root.trainable_total) if root else (0, 0)
        self.total_params, self.trainable_params = total, trainable
        self._laid_out: _Layout | None = None

    @property
    def modules(self) -> list[ModuleRecord]:
        """The model's module records (built on first read)."""
        if self._modules is None:
            self._modules = list(self._captured)
        return self._modules

    @property
    def width(self) -> int:
        """The table's width in terminal columns, every cell shown whole."""
        return self._layout().width

    def _layout(self) -> _Layout:
        """Each call's cells and each column's width (built once)."""
        if self._laid_out is None:
            self._laid_out = _lay_out(self.calls, self._own)
        return self._laid_out

    def table(self) -> Table:
        """The per-call table: layer, input and output shapes, dtype, device, params, stats."""
        table = Table(header_style="bold")
        layout = self._layout()
        rows = layout.rows
        for name, justify in _COLUMNS:
            # the layer column as wide as the direct writer makes it: its widest label, in
            # terminal cells (a name's combining marks take none, its wide characters two)
            width = layout.widths[0] if name == "Layer" else None
            table.add_column(name, justify=justify, no_wrap=True, min_width=width)
        for call, row in zip(self.calls, rows, strict=True):
            style = _OP_STYLE if call.kind == "op" else ""
            table.add_row(Text(row[0], style=style), *(Text(cell) for cell in row[1:]))
        return table

    def footer(self) -> str:
        """Totals and notes under the table."""
        ops = [c.kind for c in self.calls].count("op")
        totals = (
            f"Total params: {formatting.count(self.total_params)}   "
            f"Trainable params: {formatting.count(self.trainable_params)}   "
            f"Calls: {len(self.calls) - ops} module, {ops} op"
        )
        notes = [
            f"Note: {literal(note)}" for note in self.notes if not note.startswith("op layer on")
        ]
        return "\n".join([totals, *notes]) if notes else totals

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # The table's text is laid out here when it fits the width as it is (the usual case):
        # rich's Table measures and renders every cell on its own, some 1 ms per call, more
        # than the traced forward of most models. A table too wide for the console, or an
        # ASCII-only one, is left to rich, which shrinks columns and substitutes box characters.
        if options.ascii_only or not self.calls or self.width > options.max_width:
            yield self.table()
        else:
            yield from _grid(self.calls, self._layout())
        footer = self.footer()
        if "\n" in footer or cell_len(footer) > options.max_width:
            yield Text(footer)  # Text: names are never read as markup; long notes wrap
        else:
            yield from (Segment(footer), _NEWLINE)

    def render_plain(self, console: Console, width: int) -> str | None:
        """The text ``console.print(self)`` writes at ``width`` columns, built without rich's
        print pipeline; None where that pipeline must run (see :func:`_echo`)."""
        if console.is_jupyter or console.record or console.legacy_windows or console.quiet:
            return None
        return self._written(width, console.encoding, console.color_system, console.no_color)

    def _written(
        self, width: int, encoding: str, color_system: str | None, no_color: bool
    ) -> str | None:
        """:meth:`render_plain` for a plain console of this encoding, colour system and
        ``no_color``."""
        layout = self._layout()
        if not self.calls or layout.width > width or not encoding.startswith("utf"):
            return None
        footer = self.footer()
        if "\n" in footer or _cells_of(footer) > width:
            return None
        system = COLOR_SYSTEMS.get(color_system or "")
        if system is None:  # no style written at all: the op labels are plain text
            return _text(self.calls, layout, footer, None, None)
        bold, op = (_BOLD.without_color, _OP.without_color) if no_color else (_BOLD, _OP)
        render = Style.render
        return _text(
            self.calls,
            layout,
            footer,
            partial(render, bold, color_system=system),
            partial(render, op, color_system=system),
        )

    def __str__(self) -> str:
        buffer = io.StringIO()
        width = max(_WIDTH, self.width)  # as printed by summary(): no column squeezed
        Console(file=buffer, width=width, color_system=None, legacy_windows=False).print(self)
        return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())

    def __repr__(self) -> str:
        return f"<Summary {len(self.calls)} calls, {formatting.count(self.total_params)} params>"


_WIDTH = 200
_CELL = 120  # longer names and type names end in an ellipsis
_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("Layer", "left"),
    ("Input", "left"),
    ("Output", "left"),
    ("dtype", "left"),
    ("device", "left"),
    ("Params", "right"),
    ("mean", "right"),
    ("std", "right"),
    ("min", "right"),
    ("max", "right"),
)


_RIGHT = tuple(justify == "right" for _, justify in _COLUMNS)
_HEAD_WIDTHS = tuple(len(name) for name, _ in _COLUMNS)
_OP_STYLE = "italic cyan"
_OP, _BOLD, _NEWLINE = Style(italic=True, color="cyan"), Style(bold=True), Segment.line()
# rich's HEAVY_HEAD box, the Table default: top, header, header rule, rows, bottom.
_TOP, _HEAD_RULE, _BOTTOM = ("┏", "━", "┳", "┓"), ("┡", "━", "╇", "┩"), ("└", "─", "┴", "┘")


class _Layout(NamedTuple):
    """The table's cells, one row per call (a cell of several lines has them joined by line
    breaks), whether each row is a single line of ASCII text (written with one ``str.format``),
    and the widest line of each column, its header included."""

    rows: list[list[str]]
    plain: list[bool]
    widths: list[int]
    width: int  # the table's, in terminal columns


def _lay_out(calls: Sequence[CallRecord], own: Mapping[str, int]) -> _Layout:
    """Every call's row, built and measured in one pass (compiled where the kernel module is
    built: :data:`_compiled_lay_out`).

    A summary is printed once, often for a model of a few layers, so the table's own cost is
    the printed summary's: the row is built inline from the records, and the texts that repeat
    (dtypes, devices, type names, shapes) are escaped once (see :func:`_literal`)."""
    if _compiled_lay_out is not None:
        return _Layout(*_compiled_lay_out(calls, own, _TABLE_CONTEXT))
    return _lay_out_here(calls, own)


def _lay_out_here(calls: Sequence[CallRecord], own: Mapping[str, int]) -> _Layout:
    """:func:`_lay_out` in Python."""
    known, shapes, text, cells = _SHAPES, _shapes, _literal, _cells
    rows: list[list[str]] = []
    plain: list[bool] = []
    for call in calls:
        kind = call.kind
        indent = "  " * call.depth
        if kind == "op":
            label = indent + text(call.op or "")
        elif call.module:
            label = f"{indent}{text(call.module.rpartition('.')[2])} ({text(call.type)})"
            if call.call_index:
                label += f" #{call.call_index}"
        else:
            label = indent + text(call.type)
        params = ""
        if kind == "module" and call.call_index == 0:
            count = own.get(call.module)
            if count:
                params = formatting.count(count)
        inputs, outputs = call.inputs, call.outputs
        if len(outputs) == 1:
            # The usual row: one output, and one input of its dtype, neither named (slot "0").
            out = outputs[0]
            dtype = out.dtype
            if len(inputs) == 1 and (first := inputs[0]).slot == "0" and first.dtype == dtype != "":
                shown_in = known.get(first.shape) or shapes(inputs, dtype)
            else:
                shown_in = shapes(inputs, dtype)
            if out.slot == "0" and dtype != "":
                shown_out = known.get(out.shape) or shapes(outputs)
            else:
                shown_out = shapes(outputs)
            get = out.stats.get
            mean = get("mean")
            row = [
                label,
                shown_in,
                shown_out,
                text(dtype or out.type_name),
                text(out.device),
                params,
                # bool: the share of True
                *cells(
                    get("true_frac") if mean is None else mean, get("std"), get("min"), get("max")
                ),
            ]
        else:
            row = _other_row(call, label, params)
        joined = "".join(row)
        plain.append(joined.isascii() and "\n" not in joined)
        rows.append(row)
    # The widest cell of each column, ASCII rows first (one cell per character): max() of the
    # header's width and every row's, column by column, in one pass of map.
    every = all(plain)
    simple = rows if every else [row for row, one in zip(rows, plain, strict=True) if one]
    widths = list(_HEAD_WIDTHS)
    if simple:
        widths = list(map(max, widths, *[map(len, row) for row in simple]))
    if not every:
        for row, one in zip(rows, plain, strict=True):
            if not one:
                _widen(widths, row)
    width = sum(widths) + 3 * len(widths) + 1  # a space either side and a border per column
    return _Layout(rows, plain, widths, width)


def _other_row(call: CallRecord, label: str, params: str) -> list[str]:
    """The row of a call of several outputs (or none): the tensors among them, else all."""
    outputs = call.outputs
    shown = [r for r in outputs if r.is_tensor] or list(outputs)
    return [
        label,
        _shapes(call.inputs, shown[0].dtype if shown else ""),
        _shapes(outputs),
        "\n".join([_literal(r.dtype or r.type_name) for r in shown]),
        "\n".join([_literal(r.device) for r in shown]),
        params,
        *_stat_columns(shown),
    ]


def _widen(widths: list[int], row: list[str]) -> None:
    """Each column's width grown to the widest line of the row's cell, in terminal cells."""
    for i, cell in enumerate(row):
        for line in cell.split("\n"):
            width = _cells_of(line)
            if width > widths[i]:
                widths[i] = width


def _cells_of(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


class _Frame(NamedTuple):
    """What depends on the column widths only: the rules, the header cells, and the
    ``str.format`` patterns of an ASCII line (whole, and split after the label)."""

    widths: tuple[int, ...]
    top: str
    heads: list[str]
    head: str  # the header line, unstyled
    head_rule: str
    bottom: str
    whole: str
    first: str
    rest: str


def _frame(columns: list[int]) -> _Frame:
    widths = tuple(columns)
    frame = _FRAMES.get(widths)
    if frame is None:
        specs = [f" {{:{'>' if r else '<'}{w}}} " for w, r in zip(widths, _RIGHT, strict=True)]
        first, rest = specs[0], "│" + "│".join(specs[1:]) + "│"
        heads = [_pad(h, w, r) for (h, _), w, r in zip(_COLUMNS, widths, _RIGHT, strict=True)]
        frame = _Frame(
            widths,
            _rule(_TOP, widths),
            heads,
            "┃" + "┃".join(heads) + "┃",
            _rule(_HEAD_RULE, widths),
            _rule(_BOTTOM, widths),
            "│" + first + rest,
            first,
            rest,
        )
        _remember(_FRAMES, widths, frame)
    return frame


def _text(
    calls: Sequence[CallRecord],
    layout: _Layout,
    footer: str,
    bold: Callable[[str], str] | None,
    op: Callable[[str], str] | None,
) -> str:
    """The table and its footer as ``console.print`` writes them: ``bold`` and ``op`` render
    the header cells and the op labels in their styles (both None: a console without style)."""
    frame = _frame(layout.widths)
    head = frame.head if bold is None else "┃" + "┃".join(map(bold, frame.heads)) + "┃"
    if _compiled_text is not None:
        ops = None if op is None else [call.kind == "op" for call in calls]
        written: str | None = _compiled_text(
            layout.rows,
            frame.widths,
            _RIGHT,
            frame.top,
            head,
            frame.head_rule,
            frame.bottom,
            footer,
            ops,
            op,
        )
        if written is not None:
            return written
    lines = [frame.top, head, frame.head_rule]
    whole = frame.whole.format
    if op is None and all(layout.plain):  # the usual table: one str.format a line
        lines += starmap(whole, layout.rows)
        lines += (frame.bottom, footer, "")
        return "\n".join(lines)
    for call, row, one in zip(calls, layout.rows, layout.plain, strict=True):
        if one and (op is None or call.kind != "op"):
            lines.append(whole(*row))
        elif op is None:
            lines += [_line(values, frame) for values in _row_values(row)]
        else:
            pieces = _row_pieces(call, row, frame)  # the op style is the only one
            lines.append("".join([text if style is None else op(text) for text, style in pieces]))
    lines += (frame.bottom, footer, "")
    return "\n".join(lines)


def _grid(calls: Sequence[CallRecord], layout: _Layout) -> list[Segment]:
    """The table as rich's Table draws it (same box, padding and justification), as segments
    ready to print."""
    return [Segment(text, style) for text, style in _pieces(calls, layout)]


def _pieces(calls: Sequence[CallRecord], layout: _Layout) -> list[tuple[str, Style | None]]:
    """The table's text in pieces, each with its style (None: plain); a line break is a piece
    of its own, as rich's segments have it."""
    frame = _frame(layout.widths)
    nl: tuple[str, None] = ("\n", None)
    out: list[tuple[str, Style | None]] = [(frame.top, None), nl]
    for head in frame.heads:
        out += [("┃", None), (head, _BOLD)]  # rich's borders are not bold
    out += [("┃", None), nl, (frame.head_rule, None), nl]
    for call, row in zip(calls, layout.rows, strict=True):
        out += _row_pieces(call, row, frame)
        out.append(nl)
    out += [(frame.bottom, None), nl]
    return out


def _row_pieces(call: CallRecord, row: list[str], frame: _Frame) -> list[tuple[str, Style | None]]:
    """One call's lines, a line break between them; an op's label is a piece of its own, in
    the op style."""
    out: list[tuple[str, Style | None]] = []
    op = call.kind == "op"  # on the first line only
    for values in _row_values(row):
        if out:
            out.append(("\n", None))
        if not op:
            out.append((_line(values, frame), None))
        elif "".join(values).isascii():  # padded by str.format, one call per line
            label = frame.first.format(values[0])
            out += [("│", None), (label, _OP), (frame.rest.format(*values[1:]), None)]
        else:
            cells = [_pad(*cell) for cell in zip(values, frame.widths, _RIGHT, strict=True)]
            out += [("│", None), (cells[0], _OP), ("│" + "│".join(cells[1:]) + "│", None)]
        op = False
    return out


def _row_values(row: list[str]) -> Iterator[tuple[str, ...]]:
    """The cells of each line of a row whose cells have several lines."""
    return zip_longest(*[cell.split("\n") for cell in row], fillvalue="")


def _line(values: Sequence[str], frame: _Frame) -> str:
    """One line of a row without style: ASCII padded by ``str.format`` in one call."""
    if "".join(values).isascii():
        return frame.whole.format(*values)
    return (
        "│"
        + "│".join([_pad(*cell) for cell in zip(values, frame.widths, _RIGHT, strict=True)])
        + "│"
    )


def _rule(box: tuple[str, str, str, str], widths: Sequence[int]) -> str:
    left, line, cross, end = box
    return left + cross.join([line * (w + 2) for w in widths]) + end


def _pad(value: str, width: int, right: bool) -> str:
    if value.isascii():  # one cell per character
        return f" {value.rjust(width)} " if right else f" {value.ljust(width)} "
    gap = " " * (width - cell_len(value))
    return f" {gap}{value} " if right else f" {value}{gap} "


def _shapes(records: Sequence[TensorRecord], usual_dtype: str | None = None) -> str:
    """One line per record; an input whose dtype differs from the output's shows it."""
    lines = []
    for r in records:
        if r.dtype != "":  # a tensor: its shape, escaped once per shape
            label = _SHAPES.get(r.shape)
            if label is None:
                label = _shape_label(r.shape)
            if usual_dtype is not None and r.dtype != usual_dtype:
                label = f"{label} {_literal(r.dtype)}"
        else:  # an opaque object: its type's name
            label = _literal(r.type_name)
        if len(records) == 1 and r.slot == "0":
            return label
        lines.append(f"{_literal(r.slot)}: {label}")
    return "\n".join(lines)


def _shape_label(shape: tuple[int, ...]) -> str:
    """A shape's text, escaped and cut to a cell, remembered."""
    return _remember(_SHAPES, shape, literal(format_shape(shape), _CELL))


_STATS = ("mean", "std", "min", "max")


def _stat_columns(records: Sequence[TensorRecord]) -> list[str]:
    """The mean, std, min and max cells of several records (or none): one line per record."""
    per_record = [_numbers(r.stats) for r in records]
    return ["\n".join([values[i] for values in per_record]) for i in range(len(_STATS))]


def _numbers(stats: Mapping[str, float]) -> list[str]:
    values = [stats.get(key) for key in _STATS]
    if values[0] is None:
        values[0] = stats.get("true_frac")  # bool tensors: the share of True
    return _cells(*values)


def _number(value: float | None) -> str:
    """:func:`formatting.number` of a statistic, ``""`` when missing."""
    return "" if value is None else formatting.number(value)


def _numbers_one_by_one(*values: float | None) -> list[str]:
    return [_number(value) for value in values]


#: ``_cells(*values)``: the cells of these statistics, :func:`_number` of each; compiled where
#: the kernel module was built (a summary's four per call, formatted one by one in Python, were
#: most of the time its table took to lay out).
_cells: Callable[..., list[str]]
try:
    from tracer.core._speedups import numbers as _compiled_numbers
except ImportError:  # built without it (or not built): the same text, in Python
    _cells = _numbers_one_by_one
    _compiled_lay_out: Callable[..., tuple[Any, ...]] | None = None
    _compiled_text: Callable[..., str | None] | None = None
else:
    # The table laid out and written in C as well (an older build of the module lacks them).
    from tracer.core import _speedups

    _compiled_lay_out = getattr(_speedups, "lay_out", None)
    _compiled_text = getattr(_speedups, "table_text", None)
    _cells = partial(
        _compiled_numbers,
        formatting.number,
        formatting.DIGITS["full"],
        formatting.WHOLE_BELOW["full"],
    )


# Texts escaped once per process, each cache emptied when full: dtypes, devices, type names,
# slots and shapes repeat from row to row and from one summary to the next.
_CACHE_SIZE = 4096
_LITERALS: dict[str, str] = {}
_SHAPES: dict[tuple[int, ...], str] = {}
_FRAMES: dict[tuple[int, ...], _Frame] = {}
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _literal(value: str) -> str:
    """:func:`literal` cut to a cell, remembered (texts longer than a few cells are not)."""
    shown = _LITERALS.get(value)
    if shown is None:
        shown = literal(value, _CELL)
        if len(value) <= 4 * _CELL:
            _remember(_LITERALS, value, shown)
    return shown


#: What the compiled _lay_out is handed: the caches it reads and the functions it calls for
#: anything beyond them (a text or a shape not escaped yet, a count, a line's cells).
_TABLE_CONTEXT = (
    _LITERALS,
    _literal,
    _SHAPES,
    _shape_label,
    formatting.count,
    _cells_of,
    formatting.number,
    formatting.DIGITS["full"],
    formatting.WHOLE_BELOW["full"],
    _HEAD_WIDTHS,
)


def summary(
    model: nn.Module,
    *example_inputs: Any,
    ops: bool = True,
    stats: bool = True,
    echo: bool = True,
    **example_kwargs: Any,
) -> Summary:
    """Run one forward under a trace (no gradients) and print its table; returns the Summary.

    ``ops``, ``stats`` and ``echo`` (print the table) are the summary's own options; every
    other keyword argument goes to the model's forward.
    """
    with torch.no_grad(), trace(model, ops=ops, stats=stats) as t:
        model(*example_inputs, **example_kwargs)
    with _gc_paused():
        result = Summary(t.flow(0), t.captured_modules, t.notes)
        if echo:
            _echo(result)
    return result


def _echo(result: Summary) -> None:
    """Print the summary to standard output as ``Console().print`` would, at a width of at least
    _WIDTH columns: a narrow terminal wraps long lines instead of squeezing the layer names away
    (the torchinfo habit of fixed-width lines); a table wider still is printed whole.

    The usual case, a table and a one-line footer on a plain console, is written directly: the
    lines are already laid out, and rich's print pipeline (segments split, cropped and rendered
    one by one) cost more than the traced forward of a small model. Colour, ``NO_COLOR``,
    ``FORCE_COLOR`` and terminal detection are still rich's decisions, a ``Console()``'s, kept
    from one summary to the next while nothing they are made from changes (see
    :func:`_plain_console`); anything else (Jupyter, a recording or legacy Windows console, a
    non-UTF-8 stream, a footer that wraps) goes through rich itself.
    """
    # The console's own width matters only where rich prints: what is written directly fits
    # in this many columns (and reading the terminal's size costs three system calls).
    width = max(_WIDTH, result.width)
    plain = _plain_console()
    if plain is None:
        console = Console()
        file, text = console.file, result.render_plain(console, width)
    else:
        file, color_system, no_color = plain
        encoding = (getattr(file, "encoding", "utf-8") or "utf-8").lower()  # Console.encoding
        text = result._written(width, encoding, color_system, no_color)
    if text is None:
        width = Console().width  # COLUMNS and the terminal's size as they are now
        Console(width=max(width, _WIDTH, result.width)).print(result)
        return
    with _WRITING:  # one summary's lines never interleave with another thread's
        file.write(text)
        file.flush()


_WRITING = threading.RLock()
# The environment variables Console() reads (in __init__, _detect_color_system, is_terminal and
# is_dumb_terminal) to decide its colour system and NO_COLOR. COLUMNS, LINES and TTY_INTERACTIVE
# set the width, height and interactivity, which only rich's own printing reads (a fresh
# console's, in _echo); Jupyter's (DATABRICKS_RUNTIME_VERSION) is read only where get_ipython
# is defined, where nothing is kept; legacy Windows and its colours rich detects once a process.
_CONSOLE_ENVIRON = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TERM", "COLORTERM")
# Each variable as os.environ stores it (bytes on POSIX): os.environ.get() of a variable that is
# not set raises and catches a KeyError, and five of them cost as much as the rest of the check.
_ENVIRON_KEYS = tuple(os.environ.encodekey(name) for name in _CONSOLE_ENVIRON)


class _Kept(NamedTuple):
    """A ``Console()``'s decisions for standard output, and what they were made from."""

    state: tuple[object, ...]
    color_system: str | None
    no_color: bool


_kept: _Kept | None = None


def _environ_state() -> list[object]:
    """The values of _CONSOLE_ENVIRON (encoded), read from os.environ's own mapping where
    there is one, the one its ``get`` reads."""
    data = getattr(os.environ, "_data", None)
    if type(data) is dict:
        return [data.get(key) for key in _ENVIRON_KEYS]
    return [os.environ.get(name) for name in _CONSOLE_ENVIRON]


def _plain_console() -> tuple[IO[str], str | None, bool] | None:
    """The stream a ``Console()`` made now would write to, its colour system and ``no_color``,
    for :func:`_echo` to write the table itself; None where rich must decide everything as it
    always does (``get_ipython`` defined, no stream, one whose ``isatty`` is missing or fails, a
    legacy Windows console): then _echo makes the console.

    Making a Console costs as much as laying out a small model's table, and one kept from a
    summary to the next would be 20 objects promoted to the collector's oldest generation, left
    for a full collection once replaced. Its decisions are kept instead, neither the console
    nor the stream, while everything they are made from is unchanged: the ``isatty()`` of the
    stream it writes to (the only thing rich reads of the stream to decide, so a new stream
    of the same kind, as a ``redirect_stdout`` to a fresh buffer at each call gives, reuses
    them), the environment variables, the standard input (rich tells IDLE by it).
    """
    global _kept
    if "get_ipython" in vars(builtins) or "get_ipython" in vars(rich.console):
        return None  # rich's Jupyter detection: IPython, Colab, Databricks
    stdout = sys.stdout
    file = getattr(stdout, "rich_proxied_file", stdout)  # Console.file: a Live's proxy's file
    if file is None:
        return None
    try:
        state = (file.isatty(), getattr(sys.stdin, "__module__", None), *_environ_state())
    except Exception:  # rich answers these its own way (isatty() of a closed stream: False)
        return None
    kept = _kept
    if kept is not None and kept.state == state:
        return file, kept.color_system, kept.no_color
    console = Console()
    if console.is_jupyter or console.legacy_windows or console.file is not file:
        return None
    _kept = _Kept(state, console.color_system, console.no_color)
    return file, console.color_system, console.no_color


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The records and the table's lines are acyclic: the collections their allocation would
    set off only promote them, and a full one walks the whole heap (torch, and transformers
    where it is imported, are hundreds of thousands of objects)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
