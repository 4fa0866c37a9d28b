"""What the ``tracer`` command prints: rich tables and JSON documents built from records."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from tracer import formatting
from tracer.records import (
    CallRecord,
    RunInfo,
    TensorRecord,
    dimension_names,
    format_shape,
    literal,
)

#: Metrics listed first when runs have them; the runs' other metrics follow.
SUMMARY_METRICS = ("loss", "accuracy", "val_acc", "test_acc")
#: At most this many metric columns in ``tracer runs`` (``--format json`` has them all).
MAX_METRIC_COLUMNS = 6
#: Longer table cells end in an ellipsis (JSON keeps every character).
CELL_LIMIT = 120
#: Longer header lines (a run's name in ``show`` and ``diff``) end in an ellipsis.
LINE_LIMIT = 400


def lit(value: object, style: str = "", limit: int | None = CELL_LIMIT) -> Text:
    """A user- or database-supplied string as literal text: no markup, no highlighting,
    control characters written out, cut with an ellipsis beyond ``limit``."""
    return Text(literal(value, limit), style=style)


#: The shared formatting of numbers, durations, counts and times (``tracer.formatting``).
fmt_number = formatting.number
fmt_duration = formatting.duration
fmt_time = formatting.timestamp
fmt_count = formatting.count


# --- runs --------------------------------------------------------------------------------


def run_dict(run: RunInfo) -> dict[str, Any]:
    """A run as JSON-friendly values."""
    return {
        "id": run.id,
        "name": run.name,
        "pipeline": run.pipeline,
        "status": run.status,
        "steps": run.steps,
        "started_at": run.started_at,
        "duration_s": run.duration_s,
        "config": dict(run.config),
        "metrics": dict(run.last_metrics),
        "error": run.error,
        "device": run.device,
        "rank": run.rank,
        "world_size": run.world_size,
        "group_id": run.group_id,
    }


def runs_table(runs: Sequence[RunInfo], *, by_job: bool = True) -> Table:
    """The ``tracer runs`` table, newest first: one row per run, or per distributed job (its
    ranks listed as rank:run id) when ``by_job``."""
    from tracer.cli.jobs import job_cells

    jobs = any(run.group_id is not None or run.world_size > 1 for run in runs)
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "pipeline", "status", "ranks", "steps", "started", "took"):
        if column != "ranks" or jobs:
            table.add_column(column, justify="right" if column in ("id", "steps") else "left")
    metrics = metric_columns(runs)
    for metric in metrics[:MAX_METRIC_COLUMNS]:
        table.add_column(lit(metric), justify="right")
    for run, status, ranks in job_cells(runs, by_job=by_job):
        table.add_row(
            str(run.id),
            lit(run.name),
            lit(run.pipeline or "-"),
            lit(status),
            *([lit(ranks)] if jobs else []),
            str(run.steps),
            fmt_time(run.started_at),
            fmt_duration(run.duration_s),
            *(fmt_number(run.last_metrics.get(m)) for m in metrics[:MAX_METRIC_COLUMNS]),
        )
    return table


def metric_columns(runs: Sequence[RunInfo]) -> list[str]:
    """The metrics the runs logged: the usual ones first (loss, accuracy, ...), then the rest in
    the order first seen."""
    seen: dict[str, None] = {}
    for run in runs:
        seen.update(dict.fromkeys(run.last_metrics))
    usual = [m for m in SUMMARY_METRICS if m in seen]
    return usual + [m for m in seen if m not in SUMMARY_METRICS]


def summary_table(run: RunInfo, metrics: Mapping[str, float], duration_s: float) -> Table:
    """The table printed after ``tracer run``: id, status, steps, time and final metrics."""
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run", lit(f"{run.id} ({literal(run.name)})"))
    table.add_row("status", lit(run.status))
    table.add_row("traced steps", str(run.steps))
    table.add_row("took", fmt_duration(duration_s))
    for name, value in metrics.items():
        table.add_row(lit(name), fmt_number(value))
    return table


# --- show --------------------------------------------------------------------------------


def select_calls(calls: Iterable[CallRecord], layer: str | None) -> list[CallRecord]:
    """Calls whose module path (or op name) matches the glob ``layer`` (all when None)."""
    if not layer:
        return list(calls)
    return [
        c
        for c in calls
        if fnmatch.fnmatchcase(c.module, layer) or fnmatch.fnmatchcase(c.name, layer)
    ]


def no_layer_message(pattern: str, calls: Sequence[CallRecord]) -> str:
    """What ``show --layer`` says when nothing matched: the pattern and the closest paths."""
    import difflib

    paths = list(dict.fromkeys(c.module or "<root>" for c in calls if c.kind == "module"))
    close = difflib.get_close_matches(pattern.strip("*?[]"), paths, n=5, cutoff=0.4)
    hint = f"; close: {', '.join(close)}" if close else f"; layers: {', '.join(paths[:10])}"
    if not paths:
        hint = ""
    return f"no layer matches {pattern!r}{hint}"


def _shapes(records: Sequence[TensorRecord], names: Mapping[int, str] | None) -> Text:
    """Shapes of a call's tensors, one per line: the first plainly, the others with their slot."""
    parts = []
    for i, t in enumerate(records):
        text = literal(t.shape_text(names), CELL_LIMIT)
        parts.append(text if i == 0 else f"{literal(t.slot, CELL_LIMIT)}: {text}")
    return Text("\n".join(parts) or "-")


def flow_table(calls: Sequence[CallRecord], names: Mapping[int, str] | None = None) -> Table:
    """The shape flow of one step, one row per call; ops indented under their module."""
    table = Table(box=None, header_style="bold")
    for column in ("#", "layer", "type", "in", "out", "dtype", "mean", "std"):
        table.add_column(column, justify="right" if column in ("#", "mean", "std") else "left")
    for call in calls:
        first = call.outputs[0] if call.outputs else None
        label = f"· {call.op}" if call.kind == "op" else call.name
        stats = first.stats if first else {}
        table.add_row(
            str(call.seq),
            Text("  " * call.depth + literal(label, CELL_LIMIT)),
            lit(call.type),
            _shapes(call.inputs, names),
            _shapes(call.outputs, names),
            lit(first.dtype if first else "-"),
            fmt_number(stats.get("mean")),
            fmt_number(stats.get("std")),
        )
    return table


def tensor_dict(t: TensorRecord, names: Mapping[int, str] | None) -> dict[str, Any]:
    """A tensor record as JSON-friendly values."""
    out: dict[str, Any] = {
        "role": t.role,
        "slot": t.slot,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "device": t.device,
        "requires_grad": t.requires_grad,
        "type": t.type_name,
        "stats": dict(t.stats),  # NaN and ±Inf become null in print_json
    }
    if names is not None:
        out["named_shape"] = format_shape(t.shape, names)
    return out


def call_dict(call: CallRecord, names: Mapping[int, str] | None) -> dict[str, Any]:
    """A call record as JSON-friendly values."""
    return {
        "seq": call.seq,
        "name": call.name,
        "module": call.module,
        "type": call.type,
        "kind": call.kind,
        "op": call.op,
        "call_index": call.call_index,
        "depth": call.depth,
        "inputs": [tensor_dict(t, names) for t in call.inputs],
        "outputs": [tensor_dict(t, names) for t in call.outputs],
        "grads": [tensor_dict(t, names) for t in call.grads],
    }


def flow_dict(
    run: RunInfo, step: int, calls: Sequence[CallRecord], with_names: bool
) -> dict[str, Any]:
    """The ``tracer show --format json`` document."""
    names = dimension_names(run.config) if with_names else None
    return {
        "run": run_dict(run),
        "step": step,
        "calls": [call_dict(c, names) for c in calls],
    }


def plain_json(value: Any) -> Any:
    """``value`` with non-finite floats turned into None, so the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value
