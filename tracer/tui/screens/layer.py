"""The layer screen: every tensor of one call, the layer's parameters, statistics across steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from tracer.records import BUILTIN_STATS, CallRecord, ModuleRecord, RunInfo, TensorRecord
from tracer.tui import findings
from tracer.tui import formatting as fmt
from tracer.tui.flow import call_identity
from tracer.tui.screens.base import TracerScreen
from tracer.tui.widgets.stat_plots import StatPlots

if TYPE_CHECKING:
    from tracer.checks import CheckReport

TENSOR_COLUMNS = ("role", "slot", "shape", "dtype", "device", "grad?")
STAT_COLUMNS = BUILTIN_STATS
STAT_TITLES = {"abs_mean": "|mean|", "zero_frac": "zero%", "nan_count": "nan", "inf_count": "inf"}
PARAM_COLUMNS = ("parameter", "shape", "dtype", "numel", "trainable", "shared with")


class LayerScreen(TracerScreen):
    """One call in full, and how its statistics move across the run's traced steps."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left_square_bracket", "step(-1)", "prev step"),
        Binding("right_square_bracket", "step(1)", "next step"),
        Binding("escape", "back", "back"),
    ]

    def __init__(
        self,
        run: RunInfo,
        call: CallRecord,
        module: ModuleRecord | None,
        steps: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.run = run
        self.call = call
        self.module = module
        self.steps = list(steps) or [call.step]
        self.tensors: list[TensorRecord] = list(call.tensors)

    def compose(self) -> ComposeResult:
        """Title, tensors, parameters, plots."""
        yield Static(self._title(), id="title")
        tensors: DataTable[Text] = DataTable(id="tensors", cursor_type="row")
        tensors.border_title = "tensors"
        yield tensors
        params: DataTable[Text] = DataTable(id="params", cursor_type="row")
        params.border_title = "parameters"
        yield params
        yield StatPlots(id="plots")
        yield Footer()

    def _title(self) -> Text:
        call, module = self.call, self.module
        name = call.name if call.kind == "module" else call.module or "<root>"
        title = Text(f" {fmt.cell(name)}", "bold")
        if call.kind == "op":
            title.append(f" · op {fmt.cell(call.op)}")
        title.append(f" · {fmt.cell(call.type)}")
        if module is not None and module.extra_repr:
            title.append(f"({fmt.cell(module.extra_repr)})")
        if module is not None:
            title.append(
                f" · params {fmt.count(module.params_total)}"
                f" ({fmt.count(module.trainable_total)} trainable)"
            )
        title.append(f" · call {call.call_index} · step {call.step}", style="cyan")
        return title

    def on_mount(self) -> None:
        """Fill the tables from the call at hand; the plots and findings come from workers."""
        self._fill_tensors()
        self._fill_params()
        self.query_one("#tensors", DataTable).focus()
        run = self.run
        self.fetch(lambda: self.check(run), self._checked)

    def _checked(self, report: CheckReport) -> None:
        """Mark on the plots the steps where a finding about this layer starts."""
        marks = findings.plot_marks(findings.of_call(report.findings, self.call))
        self.query_one(StatPlots).show_marks(marks)

    def _fill_tensors(self) -> None:
        table = self.query_one("#tensors", DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        for name in (*TENSOR_COLUMNS, *STAT_COLUMNS, "other"):
            table.add_column(Text(STAT_TITLES.get(name, name)), key=name)
        for index, tensor in enumerate(self.tensors):
            table.add_row(*tensor_cells(tensor), key=str(index))
        if self.tensors:
            table.move_cursor(row=min(row, len(self.tensors) - 1), animate=False)

    def action_step(self, delta: int) -> None:
        """Show the same call at the previous or next traced step (the plots stay)."""
        where = self.steps.index(self.call.step) if self.call.step in self.steps else 0
        index = min(max(where + delta, 0), len(self.steps) - 1)
        if index == where:
            return
        run, step, wanted = self.run, self.steps[index], call_identity(self.call)

        def landed(calls: list[CallRecord]) -> None:
            found = next((c for c in calls if call_identity(c) == wanted), None)
            if found is None:
                self.notify(f"this layer was not called at step {step}", severity="warning")
                return
            self.call, self.tensors = found, list(found.tensors)
            self.query_one("#title", Static).update(self._title())
            self._fill_tensors()

        self.fetch(lambda: self.data.flow(run, step), landed)

    def _fill_params(self) -> None:
        table = self.query_one("#params", DataTable)
        for name in PARAM_COLUMNS:
            table.add_column(Text(name), key=name)
        params = self.module.parameters if self.module is not None else ()
        for param in params:
            table.add_row(
                Text(fmt.cell(param.name)),
                Text(fmt.shape(param.shape)),
                Text(fmt.cell(param.dtype)),
                Text(fmt.count(param.numel), justify="right"),
                Text("yes" if param.requires_grad else "no"),
                Text(fmt.cell(param.shared_with or "")),
            )
        if not params:
            table.display = False

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Plot the statistics of the tensor under the cursor."""
        if event.data_table.id != "tensors" or not self.tensors:
            return
        tensor = self.tensors[event.cursor_row]
        run_id, call = self.run.id, self.call
        plots = self.query_one(StatPlots)
        self.fetch(lambda: self.data.layer_series(run_id, call, tensor), plots.show_series)


def tensor_cells(tensor: TensorRecord) -> list[Text]:
    """Shape, dtype, device and every statistic of one tensor slot (literal text)."""
    stats = tensor.stats
    cells = [
        Text(fmt.cell(tensor.role)),
        Text(fmt.cell(tensor.slot)),
        Text(fmt.cell(tensor.shape_text())),
        Text(fmt.cell(tensor.dtype)),
        Text(fmt.cell(tensor.device)),
        Text("yes" if tensor.requires_grad else ""),
    ]
    for name in STAT_COLUMNS:
        value = stats.get(name)
        text = fmt.number(value * 100 if name == "zero_frac" and value is not None else value)
        style = "bold red" if name in ("nan_count", "inf_count") and value else ""
        cells.append(Text(text, style=style, justify="right"))
    extra = {k: v for k, v in stats.items() if k not in BUILTIN_STATS}
    other = "  ".join(f"{fmt.cell(k, 40)}={fmt.number(v)}" for k, v in sorted(extra.items()))
    cells.append(Text(other))
    return cells
