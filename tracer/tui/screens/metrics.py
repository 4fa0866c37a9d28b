"""The metrics screen: loss and accuracy curves of a run, its config and its provenance."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Static

from tracer.records import MetricRecord, RunInfo
from tracer.tui import formatting as fmt
from tracer.tui.screens.base import TracerScreen

CURVE_WIDTH_SPARE = 36  # the name on the left, the numbers on the right
CURVE_HEIGHT = 4


def provenance(run: RunInfo) -> list[tuple[str, str]]:
    """Where a run came from, as (field, value) pairs in reading order."""
    return [
        ("id", str(run.id)),
        ("name", run.name),
        ("pipeline", run.pipeline or fmt.MISSING),
        ("status", run.status),
        ("error", run.error or ""),
        ("traced steps", str(run.steps)),
        ("started", fmt.when(run.started_at)),
        ("finished", fmt.when(run.finished_at)),
        ("took", fmt.duration(run.duration_s) if run.status != "running" else "…"),
        ("seed", fmt.config_value(run.seed)),
        ("device", run.device or fmt.MISSING),
        ("host", run.host or fmt.MISSING),
        ("pid", fmt.config_value(run.pid)),
        ("rank", f"{run.rank} of {run.world_size}"),
        ("group", run.group_id or ""),
        ("python", run.python_version or fmt.MISSING),
        ("torch", run.torch_version or fmt.MISSING),
        ("layer-tracer", run.tracer_version or fmt.MISSING),
        ("git commit", run.git_commit or ""),
        ("command", run.command or ""),
        ("tags", ", ".join(f"{k}={v}" for k, v in run.tags.items())),
        ("notes", " | ".join(run.notes)),
    ]


def curves(metrics: Sequence[MetricRecord]) -> dict[str, list[tuple[int, float]]]:
    """Metrics grouped by name, each as (step, value) pairs in step order."""
    grouped: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for metric in sorted(metrics, key=lambda m: (m.name, m.step)):
        grouped[metric.name].append((metric.step, metric.value))
    return dict(grouped)


def curve_lines(curves: dict[str, list[tuple[int, float]]], width: int) -> list[Text]:
    """Each metric as a small bar chart with its first, last, lowest and highest value."""
    lines: list[Text] = []
    for name, points in curves.items():
        values = [v for _, v in points]
        chart = fmt.chart(values, width, CURVE_HEIGHT)
        notes = [
            f"{fmt.number(values[0])} → {fmt.number(values[-1])}",
            f"min {fmt.number(min(values))}  max {fmt.number(max(values))}",
            f"steps {points[0][0]}-{points[-1][0]} ({len(points)})",
            "",
        ]
        for index, bars in enumerate(chart):
            shown = fmt.cell(name, 12) if index == 0 else ""
            line = Text(f"{shown:<12.12}", style="bold", no_wrap=True)
            line.append(bars, style="cyan")
            line.append(f"  {notes[index] if index < len(notes) else ''}")
            lines.append(line)
    return lines


class MetricsScreen(TracerScreen):
    """Curves on top, provenance and config side by side below."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "back")]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.curves: dict[str, list[tuple[int, float]]] | None = None

    def compose(self) -> ComposeResult:
        """Title, curves, provenance and config."""
        yield Static(Text(f" run {self.run_id}  loading…"), id="title")
        plots = Static(Text("loading metrics…", style="dim"), id="curves")
        plots.border_title = "metrics per step"
        yield plots
        with Horizontal(id="metrics-panes"):
            prov: DataTable[Text] = DataTable(id="provenance", cursor_type="row", show_header=False)
            prov.border_title = "provenance"
            yield prov
            config: DataTable[Text] = DataTable(id="config", cursor_type="row")
            config.border_title = "config"
            yield config
        yield Footer()

    def on_mount(self) -> None:
        """Read run and metrics in a worker."""
        self.query_one("#provenance", DataTable).focus()
        run_id = self.run_id
        self.fetch(lambda: (self.data.run(run_id), self.data.metrics(run_id)), self._loaded)

    def _loaded(self, result: tuple[RunInfo, list[MetricRecord]]) -> None:
        run, metrics = result
        title = Text(f" run {run.id} ", style="bold", no_wrap=True, overflow="ellipsis")
        title.append(fmt.cell(run.name, fmt.TITLE_LIMIT), style="bold")
        title.append(f" · metrics and provenance · {fmt.cell(run.status)}")
        self.query_one("#title", Static).update(title)
        prov = self.query_one("#provenance", DataTable)
        prov.add_columns("field", "value")
        for key, value in provenance(run):
            prov.add_row(Text(key, style="bold"), Text(fmt.cell(value, 1_000)))
        config = self.query_one("#config", DataTable)
        config.add_columns(Text("key"), Text("value"))
        for key, value in run.config.items():
            config.add_row(Text(fmt.cell(key), style="bold"), Text(fmt.config_value(value)))
        self.curves = curves(metrics)
        self._draw()

    def on_resize(self) -> None:
        """Curves fill the width."""
        self._draw()

    def _draw(self) -> None:
        plots = self.query_one("#curves", Static)
        if self.curves is None:
            return
        if not self.curves:
            plots.update(Text("no metrics logged", style="dim"))
            return
        width = max(plots.size.width - CURVE_WIDTH_SPARE, 10)
        plots.update(
            Text("\n", no_wrap=True, overflow="crop").join(curve_lines(self.curves, width))
        )
