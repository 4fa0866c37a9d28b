"""How ``tracer diff`` presents a FlowDiff: config changes, aligned flow, parameter counts."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tracer.cli.render import CELL_LIMIT, LINE_LIMIT, fmt_count, lit, run_dict
from tracer.records import literal

MARKS = {
    "same": " ",
    "shape": "≠",
    "dtype": "≠",
    "device": "≠",
    "params": "≠",
    "added": "+",
    "removed": "-",
}
STYLES = {"same": "", "added": "green", "removed": "red"}


def _side(row: Any, role: str, right: bool) -> Text:
    call = row.right if right else row.left
    if call is None:
        return Text("")
    records = call.inputs if role == "input" else call.outputs
    return lit(records[0].shape_text() if records else "-")


def _changes_text(row: Any) -> str:
    """Which slots changed, by role and field: ``output 0, 1.0, 1.1 shape``; a module's own
    parameter count as ``params 128 -> 256``."""
    groups: dict[tuple[str, str], list[str]] = {}
    parts = []
    for c in row.changes:
        if c.field == "params":
            parts.append(f"params {fmt_count(c.left)} -> {fmt_count(c.right)}")
        else:
            groups.setdefault((c.role, c.field), []).append(literal(c.slot, CELL_LIMIT))
    slots = [f"{role} {', '.join(s)} {field}" for (role, field), s in groups.items()]
    return "; ".join(slots + parts)


def own_param_changes(diff: Any) -> list[Any]:
    """Parameter changes of modules whose own parameters differ (parents' totals follow)."""
    return [p for p in diff.params if p.left_own != p.right_own]


def diff_renderable(diff: Any, drift: bool = False) -> RenderableType:
    """Config changes, the aligned flow with changes marked, and parameter-count changes."""
    parts: list[RenderableType] = [
        Text(
            f"A: run {diff.run_a.id} ({literal(diff.run_a.name, LINE_LIMIT)}) step {diff.step_a}"
            f"    B: run {diff.run_b.id} ({literal(diff.run_b.name, LINE_LIMIT)}) "
            f"step {diff.step_b}",
            style="bold",
        )
    ]
    if diff.config:
        config = Table(title="config", box=None, header_style="bold", title_justify="left")
        for column in ("key", "A", "B"):
            config.add_column(column)
        for c in diff.config:
            config.add_row(
                lit(c.key),
                lit(repr(c.left)) if c.present_left else "-",
                lit(repr(c.right)) if c.present_right else "-",
            )
        parts.append(config)
    parts.append(_flow_table(diff, drift))
    changed = own_param_changes(diff)
    if changed:
        params = Table(title="parameters", box=None, header_style="bold", title_justify="left")
        for column in ("module", "A", "B"):
            params.add_column(column, justify="left" if column == "module" else "right")
        for p in changed:
            params.add_row(lit(p.module or "<root>"), fmt_count(p.left_own), fmt_count(p.right_own))
        parts.append(params)
    parts.append(Text(_summary(diff)))
    return Group(*parts)


def _flow_table(diff: Any, drift: bool) -> Table:
    table = Table(title="flow", box=None, header_style="bold", title_justify="left")
    for column in ("", "layer", "in A", "in B", "out A", "out B", "changes"):
        table.add_column(column)
    for row in diff.rows:
        call = row.call
        label = f"· {call.op}" if call.kind == "op" else call.name
        changes = _changes_text(row)
        if drift and row.drift:
            changes = "; ".join(filter(None, [changes, "drift: " + ", ".join(map(str, row.drift))]))
        table.add_row(
            MARKS[row.status],
            Text(literal(label, CELL_LIMIT)),
            _side(row, "input", False),
            _side(row, "input", True),
            _side(row, "output", False),
            _side(row, "output", True),
            Text(changes),
            style=STYLES.get(row.status, "yellow"),
        )
    return table


CHANGED = ("shape", "dtype", "device", "params")


def _summary(diff: Any) -> str:
    counts = diff.counts
    changed = sum(counts.get(s, 0) for s in CHANGED)
    keys, modules = len(diff.config), len(own_param_changes(diff))
    text = (
        f"{changed} changed, {counts.get('added', 0)} added, {counts.get('removed', 0)} removed, "
        f"{counts.get('same', 0)} same; config: {keys} {'key' if keys == 1 else 'keys'} changed; "
        f"parameters: {modules} {'module' if modules == 1 else 'modules'} changed"
    )
    return "\n".join([text, *unrecorded_lines(diff), *nothing_in_common(diff)])


def unrecorded_lines(diff: Any) -> list[str]:
    """``not recorded in A: grad, param_grad (not compared)`` for each side that lacks roles."""
    return [
        f"not recorded in {side.upper()}: {', '.join(roles)} (not compared)"
        for side, roles in diff.unrecorded.items()
        if roles
    ]


def nothing_in_common(diff: Any) -> list[str]:
    """A line when no call lines up (different models, or a side without traced steps)."""
    if any(row.left is not None and row.right is not None for row in diff.rows):
        return []
    if diff.step_a is None or diff.step_b is None:
        missing = [n for n, s in (("A", diff.step_a), ("B", diff.step_b)) if s is None]
        return [f"nothing to compare: run {' and '.join(missing)} has no traced steps"]
    return ["nothing in common: no call of one flow lines up with a call of the other"]


def diff_dict(diff: Any) -> dict[str, Any]:
    """The ``tracer diff --format json`` document."""
    return {
        "run_a": run_dict(diff.run_a),
        "run_b": run_dict(diff.run_b),
        "step_a": diff.step_a,
        "step_b": diff.step_b,
        "identical": diff.identical,
        "counts": dict(diff.counts),
        "structural": diff.structural,
        "unrecorded": {side: list(roles) for side, roles in diff.unrecorded.items()},
        "config": [{"key": c.key, "a": c.left, "b": c.right} for c in diff.config],
        "params": [
            {
                "module": p.module,
                "a_total": p.left_total,
                "b_total": p.right_total,
                "a_own": p.left_own,
                "b_own": p.right_own,
            }
            for p in diff.params
        ],
        "rows": [_row_dict(r) for r in diff.rows],
    }


def _row_dict(row: Any) -> dict[str, Any]:
    call = row.call
    return {
        "status": row.status,
        "module": call.module,
        "name": call.name,
        "type": call.type,
        "kind": call.kind,
        "op": call.op,
        "call_index": call.call_index,
        "changes": [
            {
                "role": c.role,
                "slot": c.slot,
                "field": c.field,
                "a": _plain(c.left),
                "b": _plain(c.right),
            }
            for c in row.changes
        ],
        "drift": [
            {"role": d.role, "slot": d.slot, "stat": d.stat, "a": d.left, "b": d.right}
            for d in row.drift
        ],
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def structure_differs(diff: Any) -> bool:
    """What ``--exit-code`` fails on: :attr:`FlowDiff.structural` (shape, dtype, device or own
    parameter count changed, calls added or removed; roles one side never recorded aside)."""
    return bool(diff.structural)
