"""The runs table's content: varying config keys, cells, filtering and sorting (no Textual)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tracer.records import RunInfo
from tracer.tui import formatting as fmt

LIVE_MARKER = "●"


@dataclass(frozen=True, slots=True)
class Column:
    """A runs-table column: its title and how to sort runs by it."""

    key: str
    title: str
    sort_key: Callable[[RunInfo], Any]


def _metric(name: str) -> Callable[[RunInfo], Any]:
    return lambda run: _sortable(_last_metric(run, name))


def _sortable(value: Any) -> tuple[int, Any]:
    """Missing values sort last; numbers and strings never compare with each other."""
    if value is None:
        return (2, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


BASE_COLUMNS: tuple[Column, ...] = (
    Column("id", "id", lambda r: r.id),
    Column("name", "name", lambda r: r.name.lower()),
    Column("pipeline", "pipeline", lambda r: r.pipeline or ""),
    Column("status", "status", lambda r: r.status),
    Column("steps", "steps", lambda r: r.steps),
    Column("started", "started", lambda r: r.started_at or 0.0),
    Column("took", "took", lambda r: _sortable(r.duration_s)),
    Column("loss", "loss", _metric("loss")),
    Column("acc", "acc", _metric("accuracy")),
)


def _last_metric(run: RunInfo, name: str) -> float | None:
    """The run's last value of a metric; ``acc`` also answers for ``accuracy``."""
    for key in (name, "acc") if name == "accuracy" else (name,):
        if key in run.last_metrics:
            return run.last_metrics[key]
    return None


def varying_keys(runs: Sequence[RunInfo]) -> list[str]:
    """Config keys whose values differ between the runs (or that only some runs have)."""
    if len(runs) < 2:
        return []
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.config))
    missing = object()
    return [key for key in keys if len({repr(run.config.get(key, missing)) for run in runs}) > 1]


def _config_sort_key(key: str) -> Callable[[RunInfo], Any]:
    return lambda run: _sortable(run.config.get(key))


def columns(config_keys: Sequence[str]) -> list[Column]:
    """The base columns followed by one column per varying config key."""
    extra = [Column(f"config.{k}", fmt.cell(k), _config_sort_key(k)) for k in config_keys]
    return [*BASE_COLUMNS, *extra]


def status_text(run: RunInfo) -> str:
    """The status cell: running runs carry the live marker, ranks show when there are several."""
    text: str = run.status
    if run.status == "running":
        text = f"{text} {LIVE_MARKER}"
    if run.world_size > 1:
        text = f"{text} r{run.rank}"
    return text


def cells(run: RunInfo, config_keys: Sequence[str]) -> list[str]:
    """Plain-text cells of one run, in :func:`columns` order."""
    base = [
        str(run.id),
        fmt.cell(run.name),
        fmt.cell(run.pipeline or fmt.MISSING),
        fmt.cell(status_text(run)),
        str(run.steps),
        fmt.clock(run.started_at),
        fmt.duration(run.duration_s) if run.status != "running" else "…",
        fmt.number(_last_metric(run, "loss")),
        fmt.number(_last_metric(run, "accuracy")),
    ]
    return base + [fmt.config_value(run.config.get(k)) for k in config_keys]


def matches(run: RunInfo, query: str) -> bool:
    """True when every word of the query appears in the run's name, pipeline, status or config."""
    if not query.strip():
        return True
    haystack = " ".join(
        [str(run.id), run.name, run.pipeline or "", run.status, run.group_id or ""]
        + [f"{k}={v}" for k, v in run.config.items()]
    ).lower()
    return all(word in haystack for word in query.lower().split())


def select(
    runs: Sequence[RunInfo], query: str, sort: Column | None, reverse: bool
) -> list[RunInfo]:
    """The runs to show: filtered by the query, sorted by a column (newest first by default)."""
    shown = [run for run in runs if matches(run, query)]
    if sort is not None:
        shown.sort(key=sort.sort_key, reverse=reverse)
    return ranks_together(shown)


def ranks_together(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """The ranks of a distributed job next to each other, by rank, where its first run was."""
    from tracer.store.groups import GroupInfo, group_runs

    together: list[RunInfo] = []
    for entry in group_runs(runs):
        together.extend(entry.runs if isinstance(entry, GroupInfo) else (entry,))
    return together


def fingerprint(runs: Sequence[RunInfo]) -> tuple[tuple[Any, ...], ...]:
    """What must change for the runs table to need a redraw."""
    return tuple(
        (r.id, r.name, r.status, r.steps, r.updated_at, tuple(r.last_metrics.items())) for r in runs
    )
