"""Statistics of one tensor slot across steps, as labelled sparklines."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from tracer.tui import formatting as fmt
from tracer.tui.data import LayerSeries
from tracer.tui.findings import PLOT_MARKER, SEVERITY_STYLE

#: A finding's mark: its first step, severity and what it is (``nan (output 0)``).
Mark = tuple[int, str, str]

LABEL_WIDTH = 7
TAIL_WIDTH = 34


class StatPlots(Static):
    """mean, std, zero fraction and gradient norm of one slot, each over every traced step,
    with a mark under the step where a finding about the layer starts."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("loading statistics across steps…", style="dim"), id=id)
        self.series: LayerSeries | None = None
        self.marks: list[Mark] = []

    def show_marks(self, marks: Sequence[Mark]) -> None:
        """Mark the first steps of findings about this layer (redrawn with the series)."""
        self.marks = list(marks)
        self._draw()

    def show_series(self, series: LayerSeries) -> None:
        """Draw the series (redrawn to the widget's width on resize)."""
        self.series = series
        # a Text: a title string would be read as markup, and the slot is the model's own key
        self.border_title = Text(f"{fmt.cell(series.role)} {fmt.cell(series.slot)} across steps")
        self._draw()

    def on_resize(self) -> None:
        """Sparklines fill the available width."""
        self._draw()

    def _draw(self) -> None:
        if self.series is None:
            return
        width = max(self.size.width - LABEL_WIDTH - TAIL_WIDTH, 10)
        lines = [
            plot_line(label, points, width)
            for label, points in (
                ("mean", self.series.stats.get("mean", [])),
                ("std", self.series.stats.get("std", [])),
                ("zero%", self.series.stats.get("zero_frac", [])),
                ("grad‖", self.series.grad_norm),
            )
        ]
        if self.marks:
            steps = [step for step, _ in _axis(self.series)]
            lines.append(mark_line(self.marks, steps, width))
        self.update(Text("\n", no_wrap=True, overflow="crop").join(lines))


def plot_line(
    label: str, points: Sequence[tuple[int, float]], width: int, label_width: int = LABEL_WIDTH
) -> Text:
    """``std    ▁▂▃▅▇  0.04 → 0.31  (4 steps)`` for one statistic."""
    line = Text(f"{label:<{label_width}}", style="bold", no_wrap=True, overflow="crop")
    if not points:
        line.append("not recorded", style="dim")
        return line
    values = [v for _, v in points]
    line.append(f"{fmt.sparkline(values, width):<{width}}", style="cyan")
    line.append(f"  {fmt.number(values[0])} → {fmt.number(values[-1])}")
    if label == "grad‖":
        line.append(trend(values), style="bold yellow")
    line.append(f"  ({len(points)} steps)", style="dim")
    return line


def _axis(series: LayerSeries) -> list[tuple[int, float]]:
    """The points the marks line up with: the first statistic that has any."""
    for points in (*series.stats.values(), series.grad_norm):
        if points:
            return points
    return []


def mark_line(marks: Sequence[Mark], steps: Sequence[int], width: int) -> Text:
    """``found     ▲   nan (output 0) from step 20``: a mark under each finding's first step."""
    line = Text(f"{'found':<{LABEL_WIDTH}}", style="bold", no_wrap=True, overflow="crop")
    cells = [Text(" ") for _ in range(width)]
    for step, severity, _ in marks:
        if steps:
            cells[column_of(step, steps, width)] = Text(PLOT_MARKER, SEVERITY_STYLE[severity])
    for cell in cells:
        line.append_text(cell)
    for i, (step, severity, what) in enumerate(marks):
        line.append("  " if i == 0 else ", ")
        line.append(f"{what} from step {step}", style=SEVERITY_STYLE[severity])
    return line


def column_of(step: int, steps: Sequence[int], width: int) -> int:
    """The sparkline column that shows ``step`` (or the first traced step after it), as
    :func:`tracer.tui.formatting.sparkline` resamples ``steps`` to ``width`` columns."""
    index = next((i for i, s in enumerate(steps) if s >= step), len(steps) - 1)
    shown = [c * len(steps) // width for c in range(width)]
    exact = [c for c, i in enumerate(shown) if i == index]
    if exact:
        return exact[0]
    return max((c for c, i in enumerate(shown) if i < index), default=0)


def trend(values: Sequence[float]) -> str:
    """A warning when a gradient norm shrank or grew a hundredfold from first to last step."""
    first, last = values[0], values[-1]
    if first > 0 and last < first / 100:
        return "  vanishing?"
    if first > 0 and last > first * 100:
        return "  exploding?"
    return ""
