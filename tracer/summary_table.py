"""``tracer.summary()``: one traced forward printed as a table (torchinfo's habit, with values)."""

from __future__ import annotations

import gc
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
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
        outputs = [r for r in call.outputs if r.is_tensor] or list(call.outputs)
        module = self._by_path.get(call.module)
        params = ""
        if call.kind == "module" and call.call_index == 0 and module and module.params_own:
            params = formatting.count(module.params_own)
        return [
            _layer_label(call),
            _shapes(call.inputs, outputs[0].dtype if outputs else ""),
            _shapes(call.outputs),
            "\n".join(literal(r.dtype or r.type_name, _CELL) for r in outputs),
            "\n".join(literal(r.device, _CELL) for r in outputs),
            params,
            *(_stat_lines(outputs, key) for key in ("mean", "std", "min", "max")),
        ]

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
    right = [justify == "right" for _, justify in _COLUMNS]
    out = [Segment(_rule(_TOP, widths)), _NEWLINE]
    for (h, _), w, r in zip(_COLUMNS, widths, right, strict=True):
        out += [Segment("┃"), Segment(_pad(h, w, r), _BOLD)]  # rich's borders are not bold
    out += [Segment("┃"), _NEWLINE, Segment(_rule(_HEAD_RULE, widths)), _NEWLINE]
    for call, row in zip(calls, split, strict=True):
        height = max(len(lines) for lines in row)
        for k in range(height):
            cells = [
                _pad(lines[k] if k < len(lines) else "", w, r)
                for lines, w, r in zip(row, widths, right, strict=True)
            ]
            if k == 0 and call.kind == "op":
                out += [Segment("│"), Segment(cells[0], _OP)]
                out.append(Segment("│" + "│".join(cells[1:]) + "│"))
            else:
                out.append(Segment("│" + "│".join(cells) + "│"))
            out.append(_NEWLINE)
    out += [Segment(_rule(_BOTTOM, widths)), _NEWLINE]
    return out


def _rule(box: tuple[str, str, str, str], widths: list[int]) -> str:
    left, line, cross, end = box
    return left + cross.join(line * (w + 2) for w in widths) + end


def _pad(value: str, width: int, right: bool) -> str:
    gap = " " * (width - _cells_of(value))
    return f" {gap}{value} " if right else f" {value}{gap} "


def _layer_label(call: CallRecord) -> str:
    indent = "  " * call.depth
    if call.kind == "op":
        return f"{indent}{literal(call.op, _CELL)}"
    leaf = literal(call.module.rsplit(".", 1)[-1] if call.module else call.type, _CELL)
    suffix = f" #{call.call_index}" if call.call_index else ""
    kind = literal(call.type, _CELL)
    return f"{indent}{leaf} ({kind}){suffix}" if call.module else f"{indent}{leaf}"


def _shapes(records: Sequence[TensorRecord], usual_dtype: str | None = None) -> str:
    """One line per record; an input whose dtype differs from the output's shows it."""
    lines = []
    for r in records:
        label = literal(r.shape_text(), _CELL)
        if usual_dtype is not None and r.is_tensor and r.dtype != usual_dtype:
            label = f"{label} {literal(r.dtype, _CELL)}"
        slot = literal(r.slot, _CELL)
        lines.append(label if r.slot == "0" and len(records) == 1 else f"{slot}: {label}")
    return "\n".join(lines)


def _stat_lines(records: Sequence[TensorRecord], key: str) -> str:
    return "\n".join(_number(r.stats, key) for r in records)


def _number(stats: Mapping[str, float], key: str) -> str:
    value = stats.get(key)
    if value is None and key == "mean":
        value = stats.get("true_frac")  # bool tensors: the share of True
    return "" if value is None else formatting.number(value)


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
            # At least _WIDTH columns: a narrow terminal wraps long lines instead of squeezing
            # the layer names away (the torchinfo habit of fixed-width lines).
            # A table wider still is printed whole (rich's Table would squeeze its columns).
            console = Console()
            Console(width=max(console.width, _WIDTH, result.width)).print(result)
    return result


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
