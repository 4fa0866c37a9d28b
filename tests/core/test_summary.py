"""tracer.summary(): one forward, a printed table, and the records behind it."""

from __future__ import annotations

import builtins
import contextlib
import io
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
import torch
from core.models import ArticleLSTM, NestedModel
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.color import ColorSystem
from rich.console import Console, Group
from rich.style import Style
from rich.text import Text
from torch import nn

import tracer
from tracer import formatting, summary_table
from tracer.records import (
    CallRecord,
    ModuleRecord,
    TensorRecord,
    format_shape,
    frozen_mapping,
    literal,
)
from tracer.summary_table import Summary


def test_summary_prints_table_with_ops_shapes_and_params(
    capsys: pytest.CaptureFixture[str],
) -> None:
    torch.manual_seed(0)
    model = ArticleLSTM(vocab=100, embed=6, hidden=8)
    result = tracer.summary(model, torch.randint(0, 100, (4, 5)))
    printed = capsys.readouterr().out
    text = str(result)
    for needle in ("lstm (LSTM)", "view", "getitem", "(20, 8)", "1.1: (1, 4, 8)", "int64"):
        assert needle in printed and needle in text
    assert result.total_params == sum(p.numel() for p in model.parameters())
    assert f"Total params: {result.total_params:,}" in text
    assert [c.name for c in result.calls][-3:] == ["sig", "view", "getitem"]
    assert model.training  # the summary does not switch modes


def test_summary_options_and_forward_keyword_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    model = NestedModel()
    result = tracer.summary(model, torch.randn(2, 4), mask=torch.ones(2, 4), ops=False, echo=False)
    assert capsys.readouterr().out == ""
    assert all(c.kind == "module" for c in result.calls)
    root = result.calls[0]
    assert [r.slot for r in root.inputs] == ["0", "mask"]
    assert "opaque: Opaque" in str(result)


def test_summary_forward_error_propagates_unchanged() -> None:
    model = ArticleLSTM(vocab=10, embed=2, hidden=3)
    with pytest.raises(IndexError):
        tracer.summary(model, torch.tensor([[50]]), echo=False)  # token id out of range


def _printed(renderable: object, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, legacy_windows=False).print(renderable)
    return buffer.getvalue()


@pytest.mark.parametrize("width", [200, 60])
def test_summary_text_is_rich_tables_text(width: int) -> None:
    # The table is laid out by the summary itself when it fits, else by rich's Table (which
    # shrinks its columns): either way the text is the Table's, character for character.
    torch.manual_seed(0)
    model = ArticleLSTM(vocab=100, embed=6, hidden=8)
    result = tracer.summary(model, torch.randint(0, 100, (4, 5)), echo=False)
    expected = _printed(Group(result.table(), Text(result.footer())), width)
    assert _printed(result, width) == expected
    assert max(len(line) for line in expected.splitlines()) <= width


def test_summary_wider_than_200_columns_is_printed_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = nn.Sequential()
    model.add_module("a_rather_long_layer_name_" * 4 + "and_then_some", nn.Linear(3, 2))
    result = tracer.summary(model, torch.randn(5, 3))
    printed = capsys.readouterr().out
    assert result.width > 200
    for text in (printed, str(result)):
        assert "…" not in text
        table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
        assert {len(line) for line in table} == {result.width}


@pytest.mark.parametrize(
    ("color_system", "no_color"),
    [(None, False), ("standard", False), ("256", False), ("truecolor", False), ("truecolor", True)],
)
def test_summary_written_directly_is_what_rich_prints(
    color_system: str | None, no_color: bool
) -> None:
    # summary() writes the laid-out table itself on a plain console: byte for byte what rich's
    # print writes for the same console (colours, NO_COLOR, op rows in italics, bold headers).
    torch.manual_seed(0)
    model = ArticleLSTM(vocab=100, embed=6, hidden=8)
    result = tracer.summary(model, torch.randint(0, 100, (4, 5)), echo=False)
    assert any(call.kind == "op" for call in result.calls)
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=240, color_system=color_system, no_color=no_color, force_terminal=True
    )
    console.print(result)
    written = result.render_plain(console, 240)
    assert written == buffer.getvalue()
    assert ("\x1b[" in written) == (color_system is not None)


def test_summary_echo_falls_back_to_rich_where_it_must(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A note longer than the table's width wraps: rich prints that one, with the same table.
    model = nn.Sequential(nn.Linear(3, 2))
    result = tracer.summary(model, torch.randn(5, 3), echo=False)
    console = Console(file=io.StringIO(), width=200)
    assert result.render_plain(console, 200) is not None
    result.notes.append("x" * 300)
    assert result.render_plain(console, 200) is None
    assert result.render_plain(Console(file=io.StringIO(), record=True), 200) is None
    ascii_file = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert result.render_plain(Console(file=ascii_file), 200) is None


def test_summary_echo_writes_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    result = tracer.summary(model, torch.randn(5, 3))
    printed = capsys.readouterr().out
    assert printed.splitlines() == str(result).splitlines()
    assert "Total params: 8" in printed and printed.endswith("\n")


def test_summary_wide_characters_line_up_as_rich_lays_them_out() -> None:
    # Layer names of two-cell characters (CJK, emoji) pad by terminal cells, not characters.
    model = nn.Sequential()
    model.add_module("层一", nn.Linear(3, 2))
    model.add_module("ok", nn.ReLU())
    model.add_module("🔥", nn.Flatten(0))
    result = tracer.summary(model, torch.randn(5, 3), echo=False)
    expected = _printed(Group(result.table(), Text(result.footer())), 200)
    assert _printed(result, 200) == expected
    console = Console(file=io.StringIO(), width=200, color_system=None)
    assert result.render_plain(console, 200) == expected


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, or not, as ``tty`` is set."""

    def __init__(self, tty: bool = True) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


#: Everything rich's Console() reads from the environment.
_RICH_ENVIRON = (
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "TERM",
    "COLORTERM",
    "COLUMNS",
    "LINES",
)


def _echoed_and_fresh(model: nn.Module, x: torch.Tensor, stream: io.StringIO) -> tuple[str, str]:
    """What summary() writes to the current standard output (``stream``), and what a console
    made now by rich, with only its size set, prints there for the same summary (rich's own
    size of a dumb terminal, 80 columns, would squeeze the table summary() writes whole)."""
    start = stream.tell()
    result = tracer.summary(model, x)
    echoed = stream.getvalue()[start:]
    start = stream.tell()
    Console(width=max(200, result.width), height=25).print(result)
    return echoed, stream.getvalue()[start:]


class _IdleInput(io.StringIO):
    """Standard input as IDLE's shell has it: rich tells IDLE by the stream's module."""

    __module__ = "idlelib.run"


def test_summary_echo_follows_every_change_rich_would_see(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # summary() keeps its console's decisions from one call to the next: every change below
    # between two calls flips what rich decides (colour, NO_COLOR's plain italics, none) or
    # its colour system, and each output is what a console made at that moment prints.
    torch.manual_seed(0)
    model, x = ArticleLSTM(vocab=100, embed=6, hidden=8), torch.randint(0, 100, (4, 5))
    for name in _RICH_ENVIRON:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    terminal = _Terminal()
    coloured, no_color, plain = "\x1b[3;36m", "\x1b[3m", None
    steps: list[tuple[dict[str, str | None], bool, str | None]] = [
        ({}, True, coloured),
        ({"NO_COLOR": "1"}, True, no_color),
        ({"NO_COLOR": None}, True, coloured),
        ({"TERM": "dumb"}, True, plain),
        ({"TERM": "xterm"}, True, coloured),
        ({"COLORTERM": "truecolor"}, True, coloured),  # the same codes for these two styles
        ({"TTY_COMPATIBLE": "0"}, True, plain),
        ({"TTY_COMPATIBLE": "1"}, False, coloured),
        ({"TTY_COMPATIBLE": None}, False, plain),
        ({"FORCE_COLOR": "1"}, False, coloured),
        ({"FORCE_COLOR": ""}, False, plain),
        ({"FORCE_COLOR": None}, True, coloured),
        ({}, False, plain),  # the same stream, no longer a terminal
        ({}, True, coloured),
    ]
    with contextlib.redirect_stdout(terminal):
        for changes, tty, escape in steps:
            for name, value in changes.items():
                if value is None:
                    monkeypatch.delenv(name)
                else:
                    monkeypatch.setenv(name, value)
            terminal.tty = tty
            echoed, fresh = _echoed_and_fresh(model, x, terminal)
            assert echoed == fresh
            assert (escape in echoed) if escape else ("\x1b[" not in echoed)
            kept, made = summary_table._plain_console(), Console()
            assert kept is not None and kept[0] is terminal
            assert kept[1:] == (made.color_system, made.no_color)
        monkeypatch.setattr(sys, "stdin", _IdleInput())  # IDLE: never a terminal to rich
        echoed, fresh = _echoed_and_fresh(model, x, terminal)
        assert echoed == fresh and "\x1b[" not in echoed


def test_summary_echo_writes_where_stdout_is_now(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Standard output replaced between two summaries: each goes to the stream of its moment,
    # coloured as rich colours that stream (a terminal, FORCE_COLOR, capsys' capture).
    model, x = nn.Sequential(nn.Linear(3, 2), nn.Flatten(0)), torch.randn(5, 3)
    for name in _RICH_ENVIRON:
        monkeypatch.delenv(name, raising=False)
    first, second, plain = _Terminal(), _Terminal(), _Terminal(tty=False)
    for stream, coloured in ((first, True), (second, True), (plain, False), (first, True)):
        with contextlib.redirect_stdout(stream):
            echoed, fresh = _echoed_and_fresh(model, x, stream)
        assert echoed == fresh and ("\x1b[" in echoed) == coloured
    monkeypatch.setenv("FORCE_COLOR", "1")
    with contextlib.redirect_stdout(plain):
        echoed, fresh = _echoed_and_fresh(model, x, plain)
    assert echoed == fresh and "\x1b[" in echoed
    capsys.readouterr()
    result = tracer.summary(model, x)
    echoed = capsys.readouterr().out
    Console(width=max(200, result.width), height=25).print(result)
    assert echoed == capsys.readouterr().out and "\x1b[" in echoed
    assert first.getvalue().count("Total params") == 4  # the first stream's two, rich's two


def test_summary_echo_to_a_stream_that_is_not_utf8_is_rich_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stream that cannot take the box characters: rich prints the table (its ASCII box).
    model, x = nn.Sequential(nn.Linear(3, 2), nn.Flatten(0)), torch.randn(5, 3)
    for name in _RICH_ENVIRON:
        monkeypatch.delenv(name, raising=False)
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    with contextlib.redirect_stdout(stream):
        result = tracer.summary(model, x)
        stream.flush()
        echoed = stream.buffer.getvalue()
        Console(width=max(200, result.width), height=25).print(result)
        stream.flush()
    assert echoed + echoed == stream.buffer.getvalue() and b"+---" in echoed


class _Bare:
    """A stream that is no io object (and has no weak references), whose ``isatty`` may fail."""

    __slots__ = ("buffer", "fails")
    encoding = "utf-8"

    def __init__(self, fails: bool) -> None:
        self.buffer, self.fails = io.StringIO(), fails

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        if self.fails:
            raise ValueError("I/O operation on closed file")
        return True


@pytest.mark.parametrize("fails", [False, True])
def test_summary_echo_to_a_bare_stream_or_one_it_cannot_ask(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    # A stream of write, flush and isatty alone; one whose isatty() raises (a console made for
    # each summary then): what rich decides (a failing isatty() is no terminal).
    model, x = nn.Sequential(nn.Linear(3, 2), nn.Flatten(0)), torch.randn(5, 3)
    for name in _RICH_ENVIRON:
        monkeypatch.delenv(name, raising=False)
    stream = _Bare(fails)
    for _ in range(2):
        with contextlib.redirect_stdout(stream):
            echoed, fresh = _echoed_and_fresh(model, x, stream.buffer)
        assert echoed == fresh and ("\x1b[" in echoed) == (not fails)


def test_summary_echo_keeps_rich_decisions_but_never_in_ipython(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing changed: the second summary makes no console (one per summary would cost more
    # than the rest of the printing) and prints the same, as do summaries printed to a fresh
    # buffer each (rich reads nothing of a stream but isatty() to decide). IPython defined:
    # rich's Jupyter detection, every time, whatever was kept before.
    model, x = nn.Sequential(nn.Linear(3, 2), nn.Flatten(0)), torch.randn(5, 3)
    made: list[Console] = []

    class Counted(Console):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            made.append(self)

    monkeypatch.setattr(summary_table, "Console", Counted)
    tracer.summary(model, x)
    printed = capsys.readouterr().out
    made.clear()
    tracer.summary(model, x)
    assert capsys.readouterr().out == printed and made == []
    for _ in range(2):  # as a benchmark's redirect_stdout to a new buffer at each call gives
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            tracer.summary(model, x)
        assert buffer.getvalue() == printed and made == []

    class ZMQInteractiveShell:  # what Jupyter's get_ipython() returns
        pass

    assert summary_table._plain_console() is not None
    monkeypatch.setattr(builtins, "get_ipython", ZMQInteractiveShell, raising=False)
    assert summary_table._plain_console() is None
    monkeypatch.delattr(builtins, "get_ipython")
    assert summary_table._plain_console() is not None


#: Names and type names as a model may have them: control characters, wide characters, markup,
#: combining marks, and longer than a cell (120 characters).
_NAMES = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
        st.sampled_from(
            ["\x1b", "\n", "\r", "\t", "\x00", "\x9b", "\u2028", "层", "🔥", "[", "]", "\u0301"]
        ),
    ),
    max_size=130,
)
_STAT = st.one_of(
    st.none(),
    st.floats(allow_subnormal=False),  # NaN, infinities, huge and tiny
    st.sampled_from([-0.0, 5e-324, 1e9, 1e9 - 1, -1e9 + 1, 999999999.5, 12345.0, 1e300]),
    st.integers(min_value=-(10**12), max_value=10**12),
)
_SHAPE = st.one_of(
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=5).map(tuple),
    st.lists(st.integers(min_value=10**5, max_value=10**6), min_size=16, max_size=20).map(tuple),
)


@st.composite
def _records(draw: st.DrawFn) -> TensorRecord:
    stats = {
        key: value
        for key in ("mean", "std", "min", "max", "true_frac")
        if (value := draw(_STAT)) is not None
    }
    if draw(st.integers(0, 9)) == 0:  # an object the walker does not understand
        return TensorRecord(draw(st.sampled_from(["0", "1"])), (), "", "", type_name=draw(_NAMES))
    return TensorRecord(
        draw(st.sampled_from(["0", "0", "0", "1.0", "mask"]) | _NAMES),
        draw(_SHAPE),
        draw(st.sampled_from(["float32", "float32", "int64", "bool"]) | _NAMES),
        draw(st.sampled_from(["cpu", "cuda:0"]) | _NAMES),
        stats=frozen_mapping(stats),
    )


@st.composite
def _summaries(draw: st.DrawFn) -> summary_table.Summary:
    calls, modules = [], []
    for seq in range(draw(st.integers(1, 6))):
        op = draw(st.booleans())
        path = draw(st.sampled_from(["", "a.b"]) | _NAMES)
        calls.append(
            CallRecord(
                0,
                seq,
                path,
                draw(_NAMES),
                call_index=draw(st.sampled_from([0, 0, 1, 12])),
                kind="op" if op else "module",
                op=draw(st.none() | _NAMES) if op else None,
                inputs=tuple(draw(st.lists(_records(), max_size=3))),
                outputs=tuple(draw(st.lists(_records(), max_size=3))),
                depth=draw(st.integers(0, 3)),
            )
        )
        params = draw(st.sampled_from([0, 260, 10**12]))
        modules.append(ModuleRecord(path, "T", None, 0, params_own=params, params_total=params))
    return summary_table.Summary(calls, modules, [])


def _expected_cells(result: summary_table.Summary, call: CallRecord) -> list[str]:
    """A row's cells as the records say, straight from formatting's functions."""

    def shapes(records: Sequence[TensorRecord], dtype: str | None) -> str:
        lines = []
        for r in records:
            label = literal(format_shape(r.shape) if r.dtype else r.type_name, 120)
            if dtype is not None and r.dtype and r.dtype != dtype:
                label += " " + literal(r.dtype, 120)
            alone = len(records) == 1 and r.slot == "0"
            lines.append(label if alone else f"{literal(r.slot, 120)}: {label}")
        return "\n".join(lines)

    outputs = list(call.outputs)
    if len(outputs) != 1:
        outputs = [r for r in outputs if r.dtype] or outputs
    indent = "  " * call.depth
    if call.kind == "op":
        label = indent + literal(call.op or "", 120)
    elif call.module:
        label = f"{indent}{literal(call.module.split('.')[-1], 120)} ({literal(call.type, 120)})"
        label += f" #{call.call_index}" if call.call_index else ""
    else:
        label = indent + literal(call.type, 120)
    by_path = {m.path: m for m in result.modules}
    own = by_path[call.module].params_own if call.kind == "module" else 0
    stats = [[r.stats.get(key) for key in ("mean", "std", "min", "max")] for r in outputs]
    for values, r in zip(stats, outputs, strict=True):
        values[0] = r.stats.get("true_frac") if values[0] is None else values[0]
    return [
        label,
        shapes(call.inputs, outputs[0].dtype if outputs else ""),
        shapes(call.outputs, None),
        "\n".join(literal(r.dtype or r.type_name, 120) for r in outputs),
        "\n".join(literal(r.device, 120) for r in outputs),
        formatting.count(own) if own and call.call_index == 0 else "",
        *(
            "\n".join("" if v[i] is None else formatting.number(v[i]) for v in stats)
            for i in range(4)
        ),
    ]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(result=_summaries())
def test_summary_any_records_lay_out_as_rich_tables_them(result: summary_table.Summary) -> None:
    # Whatever the records hold (hostile names, wide characters, cut cells, several lines, any
    # statistic), the cells are the records' own text and the table is rich's Table's.
    table = result.table()
    cells = [[str(cell) for cell in column.cells] for column in table.columns]
    assert [list(row) for row in zip(*cells, strict=True)] == [
        _expected_cells(result, call) for call in result.calls
    ]
    width = max(200, result.width)
    expected = _printed(Group(table, Text(result.footer())), width)
    assert _printed(result, width) == expected
    plain = Console(file=io.StringIO(), width=width, color_system=None)
    assert result.render_plain(plain, width) == expected
    for no_color in (False, True):  # styled: what rich prints for the same console
        buffer = io.StringIO()
        console = Console(
            file=buffer, width=width, color_system="256", no_color=no_color, force_terminal=True
        )
        console.print(result)
        assert result.render_plain(console, width) == buffer.getvalue()


@pytest.mark.needs_extension("speedups")
@settings(max_examples=300, deadline=None, derandomize=True)
@given(result=_summaries())
def test_compiled_table_is_the_python_table(result: summary_table.Summary) -> None:
    # The compiled lay_out and table_text against their Python twins on any records: the same
    # cells, widths and text, plain and styled (hostile, wide and several-line cells included;
    # table_text hands back a table with a line that is not ASCII, and _text writes it).
    compiled = summary_table._lay_out(result.calls, result._own)
    layout = summary_table._lay_out_here(result.calls, result._own)
    assert compiled == layout
    footer = result.footer()
    bold = partial(Style.render, Style(bold=True), color_system=ColorSystem.EIGHT_BIT)
    op = partial(Style.render, Style(italic=True, color="cyan"), color_system=ColorSystem.EIGHT_BIT)
    written = [
        summary_table._text(result.calls, layout, footer, *styles)
        for styles in [(None, None), (bold, op)]
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(summary_table, "_compiled_text", None)
        assert written == [
            summary_table._text(result.calls, layout, footer, *styles)
            for styles in [(None, None), (bold, op)]
        ]


@pytest.mark.needs_extension("speedups")
def test_compiled_table_takes_only_ascii_rows_and_checks_its_arguments() -> None:
    from tracer.core._speedups import table_text as text

    right = (False, True)
    frame = ("top", "head", "rule", "bottom", "foot")
    plain = text([["a", "1"], ["b\nc", ""]], [1, 1], right, *frame, None, None)
    assert plain == "top\nhead\nrule\n│ a │ 1 │\n│ b │   │\n│ c │   │\nbottom\nfoot\n"
    styled = text([["a", "1"]], [3, 2], right, *frame, [True], lambda s: f"<{s}>")
    assert styled.splitlines()[3] == "│< a   >│  1 │"
    assert text([["層", "1"]], [2, 1], right, *frame, None, None) is None
    with pytest.raises(TypeError):
        text([["a", "1"]], [1, 1], right, *frame, [True, True], None)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(values=st.lists(st.one_of(_STAT, st.integers(), st.booleans()), max_size=6))
def test_summary_statistic_cells_are_formatting_numbers(values: list[float | None]) -> None:
    # The compiled cells (where the kernel module is built) and the Python ones: the text of
    # formatting.number, int64's extremes, bools and beyond included.
    expected = ["" if value is None else formatting.number(value) for value in values]
    assert summary_table._cells(*values) == expected
    assert summary_table._numbers_one_by_one(*values) == expected


@pytest.mark.needs_extension("speedups")
def test_compiled_statistic_cells_hand_other_types_to_python() -> None:
    from tracer.core import _speedups

    class Half(float):  # a float subclass: not read as a float by the compiled cells
        pass

    seen: list[object] = []

    def fallback(value: object) -> str:
        seen.append(value)
        return formatting.number(value)  # type: ignore[arg-type]

    half, big = Half(0.5), 2**70
    got = _speedups.numbers(fallback, 4, 1e9, half, None, 1.0, big, -(2**63))
    assert got == ["0.5", "", "1", "1.181e+21", "-9.223e+18"]
    assert seen == [half]
    assert _speedups.numbers(fallback, 2, 1e5, 12345.0, 123456.0, 0.012345) == [
        "12345",
        "1.2e+05",
        "0.012",
    ]
    with pytest.raises(ValueError, match="digits"):
        _speedups.numbers(fallback, 0, 1e9, 1.0)


def test_summary_counts_parameters_without_building_the_module_records() -> None:
    # The table needs each module's own count and the totals: read from what the trace
    # captured; the module records themselves are built when s.modules is first read.
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    result = tracer.summary(model, torch.randn(5, 3), echo=False)
    assert result._modules is None
    records = result.modules
    assert [r.path for r in records] == ["", "0", "1", "2"]
    assert result.total_params == records[0].params_total == 16 + 10
    assert result.trainable_params == records[0].trainable_total == 16 + 2
    rows = {line.split()[1]: line for line in str(result).splitlines() if "(Linear)" in line}
    assert "│     16 │" in rows["0"] and "│     10 │" in rows["2"]
    from_list = Summary(result.calls, records, result.notes)
    assert str(from_list) == str(result)


@pytest.mark.parametrize(
    "label",
    ["00000\u0816", "dense\u0301\u0301 block", "\u6a21\u578b\u6a21\u578b", "norm\u200b\u200blayer"],
)
def test_a_label_whose_cells_are_not_its_characters_is_as_wide_as_rich_shows_it(
    label: str,
) -> None:
    # combining marks take no cell, wide characters two: the layer column is as wide in the
    # summary's own text as in rich's table, which sizes it at least to the widest label
    calls = [
        CallRecord(0, 0, "", "T", kind="op", op=label),
        CallRecord(0, 1, "", "T", kind="op", op="x"),
    ]
    result = Summary(calls, [ModuleRecord("", "T", None, 0)], [])
    assert _printed(result, 200) == _printed(Group(result.table(), Text(result.footer())), 200)
