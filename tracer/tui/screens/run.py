"""The run screen: the module tree beside the shape flow of one traced step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Footer, Input, Static

from tracer.records import CallRecord, ModuleRecord, RunInfo, dimension_names
from tracer.tui import findings, flow
from tracer.tui import formatting as fmt
from tracer.tui.data import describe_error
from tracer.tui.flow import call_identity
from tracer.tui.screens.base import TracerScreen
from tracer.tui.widgets.flow_table import FlowTable
from tracer.tui.widgets.module_tree import ModuleTree

if TYPE_CHECKING:
    from tracer.checks import CheckReport, Finding

NARROW = 110

Identity = tuple[str, int, str, str | None]


@dataclass(frozen=True, slots=True)
class Opened:
    """Everything the run screen needs at first: the run, its steps, modules and first flow."""

    run: RunInfo
    steps: list[int]
    modules: list[ModuleRecord]
    calls: list[CallRecord]


class RunScreen(TracerScreen):
    """Browse one run: step through traced steps, move through modules and calls."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left_square_bracket", "step(-1)", "prev step"),
        Binding("right_square_bracket", "step(1)", "next step"),
        Binding("n", "names", "names"),
        Binding("t", "ops", "toggle ops"),
        Binding("m", "metrics", "metrics"),
        Binding("f", "findings", "findings"),
        Binding("slash", "search", "search"),
        Binding("enter", "detail", "layer detail", show=False),
        Binding("tab", "app.focus_next", "switch pane", show=False),
        Binding("escape", "back", "back"),
    ]

    def __init__(self, run_id: int, *, at: Finding | None = None) -> None:
        """Open run ``run_id`` at its first traced step, or at a finding's first step with the
        cursor on its call."""
        super().__init__()
        self.run_id = run_id
        self.at = at
        self.check_report: CheckReport | None = None
        self.check_failed: str | None = None
        self.run: RunInfo | None = None
        self.steps: list[int] = []
        self.step_index = 0
        self.calls: list[CallRecord] = []
        self.show_names = False
        self.show_ops = True
        self.current_module: str | None = None

    @property
    def step(self) -> int | None:
        """The traced step on screen."""
        return self.steps[self.step_index] if self.steps else None

    def compose(self) -> ComposeResult:
        """Title, hidden search box, tree and flow side by side."""
        yield Static(Text(f" run {self.run_id}  loading…"), id="title")
        yield Input(placeholder="search module paths", id="search")
        with Horizontal(id="panes"):
            tree = ModuleTree(id="modules")
            tree.border_title = "modules"
            yield tree
            table = FlowTable(id="flow")
            table.border_title = "flow"
            yield table
        yield Footer()

    def on_mount(self) -> None:
        """Load the run in a worker; follow it while it is running."""
        self.query_one(FlowTable).focus()
        self.fetch(self._open, self._opened)
        self.set_interval(self.tracer_app.poll_interval, self.poll)

    def on_resize(self, event: events.Resize) -> None:
        """Stack the panes on narrow terminals."""
        self.set_class(event.size.width < NARROW, "narrow")

    def _open(self) -> Opened:
        run = self.data.run(self.run_id)
        steps = self.data.steps(run.id)
        modules = self.data.modules(run)
        calls = self.data.flow(run, steps[self._first_index(steps)]) if steps else []
        return Opened(run, steps, modules, calls)

    def _first_index(self, steps: list[int]) -> int:
        """Where the screen opens: the finding's first step (or the next one traced), else 0."""
        if self.at is None:
            return 0
        return next((i for i, s in enumerate(steps) if s >= self.at.step), len(steps) - 1)

    def _opened(self, opened: Opened) -> None:
        self.run, self.steps = opened.run, opened.steps
        self.step_index = self._first_index(opened.steps) if opened.steps else 0
        self.query_one(ModuleTree).show(opened.modules)
        self._show_calls(opened.calls, findings.identity(self.at) if self.at else None)
        self._check()

    def _check(self) -> None:
        """Run the app's checks on the run (again once it has grown) in a worker."""
        run = self.run
        if run is not None:
            self.fetch(lambda: self._check_or_error(run), self._checked)

    def _check_or_error(self, run: RunInfo) -> CheckReport | str:
        try:
            return self.check(run)
        except Exception as exc:  # the flow still shows; the title says the check failed
            return describe_error(exc)

    def _checked(self, report: CheckReport | str) -> None:
        if isinstance(report, str):
            self.check_failed = report
            self.notify(f"the check failed: {report}", severity="warning", markup=False)
            self._title()
            return
        self.check_report, self.check_failed = report, None
        self._show_calls(self.calls, self._current_identity())

    def _current_identity(self) -> Identity | None:
        call = self.query_one(FlowTable).current_call()
        return call_identity(call) if call is not None else None

    def _show_calls(self, calls: list[CallRecord], keep: Identity | None = None) -> None:
        self.calls = calls
        names = dimension_names(self.run.config) if self.run and self.show_names else None
        marks = None
        if self.check_report is not None and self.step is not None:
            marks = findings.at_step(self.check_report.findings, self.step)
        rows = flow.rows(calls, names=names, ops=self.show_ops, findings=marks)
        key = None
        if keep is not None:
            key = next((r.key for r in rows if call_identity(r.call) == keep), None)
        self.query_one(FlowTable).show_flow(rows, keep=key)
        self._title()

    def _title(self) -> None:
        run = self.run
        if run is None:
            return
        title = Text(f" run {run.id} ", style="bold", no_wrap=True, overflow="ellipsis")
        title.append(fmt.cell(run.name, fmt.TITLE_LIMIT), style="bold")
        title.append(f" · {fmt.cell(run.pipeline or 'no pipeline')} · {fmt.cell(run.status)}")
        if self.step is None:
            title.append(" · no traced steps yet", style="yellow")
        else:
            title.append(f" · step {self.step}", style="bold cyan")
            title.append(f" ({self.step_index + 1} of {len(self.steps)})")
        if self.check_failed is not None:
            title.append("   check failed", style="yellow")
        elif self.check_report is None:
            title.append("   checking…", style="dim")
        elif self.check_report.findings:
            title.append("   findings ")
            title.append_text(findings.counts_text(self.check_report.counts))
            title.append(" (f)", style="dim")
        title.append(f"   names {'on' if self.show_names else 'off'} (n)", style="dim")
        title.append(f"   ops {'on' if self.show_ops else 'off'} (t)", style="dim")
        self.query_one("#title", Static).update(title)

    def poll(self) -> None:
        """While the run is running, pick up new steps and its final status."""
        if self.run is None or self.run.status != "running":
            return
        run_id = self.run_id
        self.poll_store(lambda: (self.data.run(run_id), self.data.steps(run_id)), self._polled)

    def _polled(self, result: tuple[RunInfo, list[int]]) -> None:
        before = self.run
        self.run, steps = result
        was_empty = not self.steps
        self.steps = steps
        if was_empty and steps:
            self._load_step(0)
        if before is None or (before.steps, before.status) != (self.run.steps, self.run.status):
            self._check()
        tree = self.query_one(ModuleTree)
        if not tree.paths:  # a run that had not begun yet when the screen opened
            run = self.run
            self.fetch(lambda: self.data.modules(run), tree.show)
        self._title()

    def _load_step(self, index: int, keep: Identity | None = None) -> None:
        run = self.run
        if run is None or not self.steps:
            return
        self.step_index = index
        step = self.steps[index]
        keep = keep or self._current_identity()

        def landed(calls: list[CallRecord]) -> None:
            if self.step == step:  # ignore a slow answer for a step already left
                self._show_calls(calls, keep)

        self.fetch(lambda: self.data.flow(run, step), landed)
        self._title()

    def action_step(self, delta: int) -> None:
        """Go to the previous or next traced step."""
        if not self.steps:
            return
        index = min(max(self.step_index + delta, 0), len(self.steps) - 1)
        if index != self.step_index:
            self._load_step(index)

    def action_names(self) -> None:
        """Toggle dimension names taken from the run's config."""
        self.show_names = not self.show_names
        self._show_calls(self.calls, self._current_identity())

    def action_ops(self) -> None:
        """Show or hide op rows (view, reshape, indexing...)."""
        self.show_ops = not self.show_ops
        self._show_calls(self.calls, self._current_identity())

    def action_metrics(self) -> None:
        """Metrics and provenance of this run."""
        from tracer.tui.screens.metrics import MetricsScreen

        self.app.push_screen(MetricsScreen(self.run_id))

    def action_findings(self) -> None:
        """What the checks found in this run; enter comes back here at the chosen one."""
        from tracer.tui.screens.findings import FindingsScreen

        self.app.push_screen(FindingsScreen(self.run_id, self.go_to_finding))

    def go_to_finding(self, finding: Finding) -> None:
        """Show the finding's first step with the cursor on its call."""
        self.at = finding
        if self.steps:
            self._load_step(self._first_index(self.steps), findings.identity(finding))

    def action_detail(self) -> None:
        """Open the layer detail of the call under the cursor."""
        call = self.query_one(FlowTable).current_call()
        if call is not None:
            self._open_detail(call)

    def _open_detail(self, call: CallRecord) -> None:
        if self.run is None or self.step is None:
            return
        from tracer.tui.screens.layer import LayerScreen

        modules = {m.path: m for m in self.query_one(ModuleTree).modules}
        screen = LayerScreen(self.run, call, modules.get(call.module), self.steps)
        self.app.push_screen(screen)

    def action_search(self) -> None:
        """Show the module search box."""
        box = self.query_one("#search", Input)
        box.add_class("visible")
        box.focus()

    def action_back(self) -> None:
        """Close the search box if open, else go back to the runs."""
        box = self.query_one("#search", Input)
        if box.has_class("visible"):
            box.remove_class("visible")
            self.query_one(FlowTable).focus()
        else:
            self.app.pop_screen()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Jump to the first module whose path contains the search text."""
        self._find(event.value, after=None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter jumps to the next match."""
        self._find(event.value, after=self.current_module)

    def _find(self, text: str, after: str | None) -> None:
        text = text.strip().lower()
        if not text:
            return
        paths = self.query_one(ModuleTree).paths
        start = paths.index(after) + 1 if after in paths else 0
        ordered = paths[start:] + paths[:start]
        found = next((p for p in ordered if text in p.lower()), None)
        if found is None:
            self.notify(f"no module path contains {text!r}", severity="warning", markup=False)
            return
        self._select_module(found)

    def _select_module(self, path: str) -> None:
        self.current_module = path
        self.query_one(ModuleTree).select_path(path)
        self.query_one(FlowTable).go_to_module(path)

    def on_flow_table_call_highlighted(self, event: FlowTable.CallHighlighted) -> None:
        """The flow moved: move the tree along."""
        self.current_module = event.call.module
        self.query_one(ModuleTree).select_path(event.call.module)

    def on_flow_table_call_chosen(self, event: FlowTable.CallChosen) -> None:
        """Enter on a call opens its detail."""
        self._open_detail(event.call)

    def on_module_tree_module_highlighted(self, event: ModuleTree.ModuleHighlighted) -> None:
        """The tree moved: move the flow to that module's first call."""
        if event.path != self.query_one(ModuleTree).current_path:
            # stale: the tree has moved on since (the flow moved it), and following this
            # would send the flow back, which moves the tree again, and so on
            return
        if event.path != self.current_module:
            self.current_module = event.path
            self.query_one(FlowTable).go_to_module(event.path)
