"""tracer.summary(): one forward, a printed table, and the records behind it."""

from __future__ import annotations

import io

import pytest
import torch
from core.models import ArticleLSTM, NestedModel
from rich.console import Console, Group
from rich.text import Text
from torch import nn

import tracer


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
