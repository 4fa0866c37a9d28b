"""The diff screen: two runs' flows aligned side by side, config and parameter changes on top."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Static

from tracer.records import RunInfo, dimension_names
from tracer.tui import diffview
from tracer.tui import formatting as fmt
from tracer.tui.data import Compared
from tracer.tui.screens.base import TracerScreen
from tracer.tui.widgets.diff_table import DiffTable


class DiffScreen(TracerScreen):
    """Compare one traced step of two runs; step each side on its own."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "jump(True)", "next change"),
        Binding("N", "jump(False)", "prev change"),
        Binding("c", "changes_only", "changes only"),
        Binding("left_square_bracket", "step('a', -1)", "left step -"),
        Binding("right_square_bracket", "step('a', 1)", "left step +"),
        Binding("left_curly_bracket", "step('b', -1)", "right step -"),
        Binding("right_curly_bracket", "step('b', 1)", "right step +"),
        Binding("a", "names", "dim names"),
        Binding("escape", "back", "back"),
    ]

    def __init__(self, run_a: int, run_b: int) -> None:
        super().__init__()
        self.run_a, self.run_b = run_a, run_b
        self.compared: Compared | None = None
        self.changes_only = False
        self.show_names = False

    def compose(self) -> ComposeResult:
        """Title, summary lines, the aligned table."""
        yield Static(Text(f" diff  run {self.run_a} ⟷ run {self.run_b}  loading…"), id="title")
        yield Static(Text(""), id="counts")
        table = DiffTable(id="diff")
        table.border_title = "aligned flows"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        """Compare the first common step in a worker."""
        self.query_one(DiffTable).focus()
        self._load(None, None)

    def _load(self, step_a: int | None, step_b: int | None) -> None:
        a, b = self.run_a, self.run_b
        self.fetch(lambda: self.data.diff(a, b, step_a, step_b), self._landed)

    def _landed(self, compared: Compared) -> None:
        self.compared = compared
        self._title()
        self._redraw(keep=None)

    def _redraw(self, keep: str | None) -> None:
        compared = self.compared
        if compared is None:
            return
        diff = compared.diff
        names: tuple[Mapping[int, str], Mapping[int, str]] = ({}, {})
        if self.show_names and diff.run_a is not None and diff.run_b is not None:
            names = (dimension_names(diff.run_a.config), dimension_names(diff.run_b.config))
        lines = diffview.lines(diff, compared.modules_a, compared.modules_b, names)
        if self.changes_only:
            lines = [line for line in lines if line.is_change]
        table = self.query_one(DiffTable)
        table.border_title = "aligned flows" + ("  (changes only)" if self.changes_only else "")
        moved = diff.counts.get("dtype", 0) + diff.counts.get("device", 0)
        table.show_lines(lines, keep=keep, dtype=bool(moved))

    def _title(self) -> None:
        diff = self.compared.diff if self.compared else None
        if diff is None:
            return
        title = Text(" diff  ", style="bold")
        for run, step, sep in ((diff.run_a, diff.step_a, "  ⟷  "), (diff.run_b, diff.step_b, "")):
            title.append_text(run_label(run, step))
            title.append(sep)
        self.query_one("#title", Static).update(title)
        counts = Text(diffview.config_summary(diff), style="bold")
        counts.append("\n" + diffview.counts_summary(diff))
        counts.append("\n" + diffview.params_summary(diff), style="dim")
        self.query_one("#counts", Static).update(counts)

    def action_jump(self, forward: bool) -> None:
        """Go to the next or previous changed row."""
        if not self.query_one(DiffTable).jump(forward):
            self.notify("no structural changes between these flows")

    def action_changes_only(self) -> None:
        """Show only the changed rows, or everything again."""
        self.changes_only = not self.changes_only
        self._redraw_in_place()

    def action_names(self) -> None:
        """Name dimensions after each run's config values."""
        self.show_names = not self.show_names
        self._redraw_in_place()

    def _redraw_in_place(self) -> None:
        current = self.query_one(DiffTable).current_line()
        self._redraw(keep=current.key if current else None)

    def action_step(self, which: str, delta: int) -> None:
        """Move one side to its previous or next traced step."""
        compared = self.compared
        if compared is None:
            return
        diff = compared.diff
        steps = compared.steps_a if which == "a" else compared.steps_b
        current = diff.step_a if which == "a" else diff.step_b
        if not steps or current is None:
            return
        step = steps[min(max(steps.index(current) + delta, 0), len(steps) - 1)]
        if step == current:
            return
        if which == "a":
            self._load(step, diff.step_b)
        else:
            self._load(diff.step_a, step)


def run_label(run: RunInfo | None, step: int | None) -> Text:
    """``6 baseline (step 0)``, the name shown literally."""
    if run is None:
        return Text("?")
    text = Text(f"{run.id} ")
    text.append(fmt.cell(run.name), style="bold")
    text.append(f" (step {step if step is not None else 'none'})", style="cyan")
    return text
