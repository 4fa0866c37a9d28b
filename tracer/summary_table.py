"""``tracer.summary()``: one traced forward printed as a table (torchinfo's habit, with values)."""

from __future__ import annotations

import gc
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

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
from tracer.records import CallRecord, ModuleRecord, TensorRecord, literal


class Summary:
    """The records of one forward and their table: ``print(s)``, ``s.calls``, ``s.total_params``."""

    def __init__(
        self, calls: Sequence[CallRecord], modules: Sequence[ModuleRecord], notes: Sequence[str]
    ) -> None:
        self.calls = list(calls)
        self.modules = list(modules)
        self.notes = list(notes)
        self._by_path = {m.path: m for m in self.modules}
        root = self._by_path.get("")
        self.total_params = root.params_total if root else 0
        self.trainable_params = root.trainable_total if root else 0
        self._laid_out: tuple[list[list[list[str]]], list[int]] | None = None
        self._shown: dict[str, str] = {}

    @property
    def width(self) -> int:
        """The table's width in terminal columns, every cell shown whole."""
        return _table_width(self._layout()[1])

    def _layout(self) -> tuple[list[list[list[str]]], list[int]]:
        """Each call's cells split into lines, and each column's width (built once)."""
        if self._laid_out is None:
            self._laid_out = _measure([self._cells(call) for call in self.calls])
        return self._laid_out

    def table(self) -> Table:
        """The per-call table: layer, input and output shapes, dtype, device, params, stats."""
        table = Table(header_style="bold")
        rows = [self._cells(call) for call in self.calls]
        labels = [row[0] for row in rows]
        for name, justify in _COLUMNS:
            width = max((len(t) for t in labels), default=5) if name == "Layer" else None
            table.add_column(name, justify=justify, no_wrap=True, min_width=width)
        for call, row in zip(self.calls, rows, strict=True):
            style = _OP_STYLE if call.kind == "op" else ""
            table.add_row(Text(row[0], style=style), *(Text(cell) for cell in row[1:]))
        return table

    def _cells(self, call: CallRecord) -> list[str]:
        """The row of one call as plain text, one line per tensor."""
        outputs: Sequence[TensorRecord] = call.outputs
        if len(outputs) != 1:  # several outputs: the tensors among them, else all
            outputs = [r for r in outputs if r.is_tensor] or list(outputs)
        params = ""
        if call.kind == "module" and call.call_index == 0:
            module = self._by_path.get(call.module)
            if module and module.params_own:
                params = formatting.count(module.params_own)
        lit = self._literal
        return [
            _layer_label(call, lit),
            _shapes(call.inputs, lit, outputs[0].dtype if outputs else ""),
            _shapes(call.outputs, lit),
            "\n".join(lit(r.dtype or r.type_name) for r in outputs),
            "\n".join(lit(r.device) for r in outputs),
            params,
            *_stat_columns(outputs),
        ]

    def _literal(self, value: str) -> str:
        """:func:`literal` cut to a cell, remembered: dtypes, devices and type names repeat."""
        shown = self._shown.get(value)
        if shown is None:
            shown = self._shown[value] = literal(value, _CELL)
        return shown

    def footer(self) -> str:
        """Totals and notes under the table."""
        ops = sum(1 for c in self.calls if c.kind == "op")
        lines = [
            f"Total params: {formatting.count(self.total_params)}   "
            f"Trainable params: {formatting.count(self.trainable_params)}   "
            f"Calls: {len(self.calls) - ops} module, {ops} op"
        ]
        lines += [
            f"Note: {literal(note)}" for note in self.notes if not note.startswith("op layer on")
        ]
        return "\n".join(lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # The table's text is laid out here when it fits the width as it is (the usual case):
        # rich's Table measures and renders every cell on its own, some 1 ms per call, more
        # than the traced forward of most models. A table too wide for the console, or an
        # ASCII-only one, is left to rich, which shrinks columns and substitutes box characters.
        if options.ascii_only or not self.calls or self.width > options.max_width:
            yield self.table()
        else:
            yield from _grid(self.calls, *self._layout())
        footer = self.footer()
        if "\n" in footer or cell_len(footer) > options.max_width:
            yield Text(footer)  # Text: names are never read as markup; long notes wrap
        else:
            yield from (Segment(footer), _NEWLINE)

    def render_plain(self, console: Console, width: int) -> str | None:
        """The text ``console.print(self)`` writes at ``width`` columns, built without rich's
        print pipeline; None where that pipeline must run (see :func:`_echo`)."""
        if (
            console.is_jupyter
            or console.record
            or console.legacy_windows
            or console.quiet
            or not console.encoding.startswith("utf")
            or not self.calls
            or self.width > width
        ):
            return None
        footer = self.footer()
        if "\n" in footer or cell_len(footer) > width:
            return None
        system = COLOR_SYSTEMS.get(console.color_system or "")
        parts = []
        for text, style in _pieces(self.calls, *self._layout(), styled=system is not None):
            if style is not None and system is not None:
                if console.no_color:
                    style = style.without_color
                text = style.render(text, color_system=system)
            parts.append(text)
        parts += (footer, "\n")
        return "".join(parts)

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
_OP_STYLE = "italic cyan"
_OP, _BOLD, _NEWLINE = Style(italic=True, color="cyan"), Style(bold=True), Segment.line()
# rich's HEAVY_HEAD box, the Table default: top, header, header rule, rows, bottom.
_TOP, _HEAD_RULE, _BOTTOM = ("┏", "━", "┳", "┓"), ("┡", "━", "╇", "┩"), ("└", "─", "┴", "┘")


def _measure(rows: list[list[str]]) -> tuple[list[list[list[str]]], list[int]]:
    """Cells split into lines, and the widest line of each column (its header included)."""
    split = [[cell.split("\n") if "\n" in cell else [cell] for cell in row] for row in rows]
    widths = [len(name) for name, _ in _COLUMNS]
    for row in split:
        for i, lines in enumerate(row):
            for line in lines:
                width = _cells_of(line)
                if width > widths[i]:
                    widths[i] = width
    return split, widths


def _table_width(widths: list[int]) -> int:
    return sum(widths) + 3 * len(widths) + 1  # a space either side and a border per column


def _cells_of(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


def _grid(
    calls: Sequence[CallRecord], split: list[list[list[str]]], widths: list[int]
) -> list[Segment]:
    """The table as rich's Table draws it (same box, padding and justification), as segments
    ready to print."""
    return [Segment(text, style) for text, style in _pieces(calls, split, widths)]


def _pieces(
    calls: Sequence[CallRecord],
    split: list[list[list[str]]],
    widths: list[int],
    styled: bool = True,
) -> list[tuple[str, Style | None]]:
    """The table's text in pieces, each with its style (None: plain); a line break is a piece
    of its own, as rich's segments have it. Not ``styled``: the header in one piece, its
    style dropped (a console without colour or style writes no style)."""
    nl: tuple[str, None] = ("\n", None)
    out: list[tuple[str, Style | None]] = [(_rule(_TOP, widths), None), nl]
    heads = [_pad(h, w, r) for (h, _), w, r in zip(_COLUMNS, widths, _RIGHT, strict=True)]
    if styled:
        for head in heads:
            out += [("┃", None), (head, _BOLD)]  # rich's borders are not bold
        out.append(("┃", None))
    else:
        out.append(("┃" + "┃".join(heads) + "┃", None))
    out += [nl, (_rule(_HEAD_RULE, widths), None), nl]
    columns = list(zip(widths, _RIGHT, strict=True))
    # ASCII cells (the usual case) are padded by str.format, one call per line.
    specs = [f" {{:{'>' if r else '<'}{w}}} " for w, r in columns]
    first, rest = specs[0], "│" + "│".join(specs[1:]) + "│"
    whole = "│" + first + rest
    for call, row in zip(calls, split, strict=True):
        height = max(map(len, row))
        for k in range(height):
            values = [lines[k] if k < len(lines) else "" for lines in row]
            op = k == 0 and call.kind == "op"
            if "".join(values).isascii():
                if op:
                    label = first.format(values[0])
                    out += [("│", None), (label, _OP), (rest.format(*values[1:]), None)]
                else:
                    out.append((whole.format(*values), None))
            else:
                cells = [_pad(v, w, r) for v, (w, r) in zip(values, columns, strict=True)]
                if op:
                    out += [("│", None), (cells[0], _OP), ("│" + "│".join(cells[1:]) + "│", None)]
                else:
                    out.append(("│" + "│".join(cells) + "│", None))
            out.append(nl)
    out += [(_rule(_BOTTOM, widths), None), nl]
    return out


def _rule(box: tuple[str, str, str, str], widths: list[int]) -> str:
    left, line, cross, end = box
    return left + cross.join([line * (w + 2) for w in widths]) + end


def _pad(value: str, width: int, right: bool) -> str:
    if value.isascii():  # one cell per character
        return f" {value.rjust(width)} " if right else f" {value.ljust(width)} "
    gap = " " * (width - cell_len(value))
    return f" {gap}{value} " if right else f" {value}{gap} "


def _layer_label(call: CallRecord, lit: Callable[[str], str]) -> str:
    indent = "  " * call.depth
    if call.kind == "op":
        return f"{indent}{lit(call.op or '')}"
    leaf = literal(call.module.rsplit(".", 1)[-1] if call.module else call.type, _CELL)
    suffix = f" #{call.call_index}" if call.call_index else ""
    kind = lit(call.type)
    return f"{indent}{leaf} ({kind}){suffix}" if call.module else f"{indent}{leaf}"


def _shapes(
    records: Sequence[TensorRecord], lit: Callable[[str], str], usual_dtype: str | None = None
) -> str:
    """One line per record; an input whose dtype differs from the output's shows it."""
    lines = []
    alone = len(records) == 1
    for r in records:
        label = literal(r.shape_text(), _CELL)
        if usual_dtype is not None and r.is_tensor and r.dtype != usual_dtype:
            label = f"{label} {lit(r.dtype)}"
        lines.append(label if alone and r.slot == "0" else f"{lit(r.slot)}: {label}")
    return lines[0] if alone else "\n".join(lines)


_STATS = ("mean", "std", "min", "max")


def _stat_columns(records: Sequence[TensorRecord]) -> list[str]:
    """The mean, std, min and max cells: one line per record."""
    if len(records) == 1:
        return _numbers(records[0].stats)
    per_record = [_numbers(r.stats) for r in records]
    return ["\n".join(values[i] for values in per_record) for i in range(len(_STATS))]


def _numbers(stats: Mapping[str, float]) -> list[str]:
    values = [stats.get(key) for key in _STATS]
    if values[0] is None:
        values[0] = stats.get("true_frac")  # bool tensors: the share of True
    return ["" if value is None else formatting.number(value) for value in values]


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
        result = Summary(t.flow(0), t.modules, t.notes)
        if echo:
            _echo(result)
    return result


def _echo(result: Summary) -> None:
    """Print the summary to standard output as ``Console().print`` would, at a width of at least
    _WIDTH columns: a narrow terminal wraps long lines instead of squeezing the layer names away
    (the torchinfo habit of fixed-width lines); a table wider still is printed whole.

    The usual case, a table and a one-line footer on a plain console, is written directly: the
    lines are already laid out, and rich's print pipeline (segments split, cropped and rendered
    one by one) cost more than the traced forward of a small model. The console is still rich's,
    so colour, ``NO_COLOR``, ``FORCE_COLOR`` and terminal detection are its decisions; anything
    else (Jupyter, a recording or legacy Windows console, a non-UTF-8 stream, a footer that
    wraps) goes through rich itself.
    """
    console = Console()
    # The console's own width matters only where rich prints: what is written directly fits
    # in this many columns (and reading the terminal's size costs three system calls).
    text = result.render_plain(console, max(_WIDTH, result.width))
    if text is None:
        Console(width=max(console.width, _WIDTH, result.width)).print(result)
        return
    with console._lock:  # rich's own lock: no interleaving with another thread's print
        console.file.write(text)
        console.file.flush()


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
