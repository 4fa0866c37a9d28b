"""A FlowDiff as side-by-side display lines with the cells to highlight (no Textual imports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tracer.records import CallRecord, ModuleRecord, literal
from tracer.store.diff import DiffRow, FlowDiff
from tracer.tui import formatting as fmt
from tracer.tui.flow import label, primary, shapes

MARKERS: dict[str, str] = {
    "same": "",
    "shape": "≠shape",
    "dtype": "≠dtype",
    "device": "≠device",
    "params": "≠params",
    "added": "+added",
    "removed": "−removed",
}
#: Longer cells end in an ellipsis.
CELL_LIMIT = 120
SIDE_FIELDS: tuple[str, ...] = ("layer", "flow", "dtype", "params", "mean", "std")


@dataclass(frozen=True, slots=True)
class Side:
    """What one run shows for an aligned row."""

    layer: str
    flow: str
    dtype: str
    params: str
    mean: str
    std: str

    def cell(self, field: str) -> str:
        """The text of one field."""
        return str(getattr(self, field))


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One aligned row: both sides (None is a gap) and the fields that differ."""

    key: str
    status: str
    left: Side | None
    right: Side | None
    changed: frozenset[str]
    drifted: frozenset[str]

    @property
    def is_change(self) -> bool:
        """A structural difference (shape, dtype, device, own parameters, added, removed): the
        row status of :mod:`tracer.store.diff`, the same one ``tracer diff`` counts."""
        return self.status != "same"

    @property
    def marker(self) -> str:
        """The glyph between the two sides."""
        text = MARKERS.get(self.status, self.status)
        if not text and self.drifted:
            text = "~drift"
        return text


def side(call: CallRecord, modules: Mapping[str, ModuleRecord], names: Mapping[int, str]) -> Side:
    """One call's cells: name, ``in → out`` shapes, dtype, parameters, output mean and std."""
    out = primary(call.outputs)
    stats = out.stats if out is not None else {}
    module = modules.get(call.module) if call.kind == "module" else None
    ins = shapes([t for t in call.inputs if t.is_tensor][:1], names)
    outs = fmt.shape(out.shape, names) if out is not None else ""
    more = sum(t.is_tensor for t in call.outputs) - 1
    kind = ""
    if out is not None:
        kind = fmt.dtype_short(out.dtype) + ("" if out.device == "cpu" else f" {out.device}")
    return Side(
        layer=literal(label(call), CELL_LIMIT),
        flow=literal(f"{ins} → {outs}" + (f" +{more}" if more > 0 else ""), CELL_LIMIT),
        dtype=literal(kind, CELL_LIMIT),
        params=fmt.count(module.params_total, "compact")
        if module is not None and module.params_total
        else "",
        mean=fmt.number(stats.get("mean"), "compact"),
        std=fmt.number(stats.get("std"), "compact"),
    )


def line(
    index: int,
    row: DiffRow,
    modules: tuple[Mapping[str, ModuleRecord], Mapping[str, ModuleRecord]],
    names: tuple[Mapping[int, str], Mapping[int, str]],
) -> DiffLine:
    """Turn one aligned row into display cells and the set of changed fields."""
    changed: set[str] = set()
    fields = set(row.changed_fields)
    if "shape" in fields:
        changed.add("flow")
    if fields & {"dtype", "device"}:
        changed.add("dtype")
    if "params" in fields:  # the module's own parameter count (a parent's total follows)
        changed.add("params")
    drifted = {d.stat for d in row.drift if d.role == "output" and d.stat in ("mean", "std")}
    left = side(row.left, modules[0], names[0]) if row.left is not None else None
    right = side(row.right, modules[1], names[1]) if row.right is not None else None
    return DiffLine(str(index), row.status, left, right, frozenset(changed), frozenset(drifted))


def lines(
    diff: FlowDiff,
    modules_a: Sequence[ModuleRecord],
    modules_b: Sequence[ModuleRecord],
    names: tuple[Mapping[int, str], Mapping[int, str]] = ({}, {}),
) -> list[DiffLine]:
    """Every aligned row of a diff, in order."""
    maps = ({m.path: m for m in modules_a}, {m.path: m for m in modules_b})
    return [line(i, row, maps, names) for i, row in enumerate(diff.rows)]


def config_summary(diff: FlowDiff) -> str:
    """``config: hidden_dim 512 → 256, lr 0.01 → 0.001`` (or that the configs match)."""
    if not diff.config:
        return "config: identical"
    parts = []
    for change in diff.config:
        left = fmt.config_value(change.left) if change.present_left else "(absent)"
        right = fmt.config_value(change.right) if change.present_right else "(absent)"
        key, left, right = (literal(text, CELL_LIMIT) for text in (change.key, left, right))
        parts.append(f"{key} {left} → {right}")
    return "config: " + ", ".join(parts)


def counts_summary(diff: FlowDiff) -> str:
    """``4 same · 3 shape · 0 dtype · 0 device · 0 params · 0 added · 0 removed · 2 drift``,
    then the roles one side never recorded (not compared)."""
    keys = ("same", "shape", "dtype", "device", "params", "added", "removed", "drift")
    text = " · ".join(f"{diff.counts.get(k, 0)} {k}" for k in keys)
    for side, roles in diff.unrecorded.items():
        if roles:
            text += f" · not recorded in {side.upper()}: {', '.join(roles)}"
    return text


def params_summary(diff: FlowDiff) -> str:
    """``params: lstm 1,114,112 → 294,912, fc 513 → 257``: modules whose own parameter count changed
    (a parent's total follows from its children's)."""
    own = [p for p in diff.params if p.left_own != p.right_own]
    if not own:
        return "params: identical"
    parts = [
        f"{literal(p.module or '<root>', CELL_LIMIT)} {fmt.count(p.left_own)} → "
        f"{fmt.count(p.right_own)}"
        for p in own
    ]
    return "params: " + ", ".join(parts)
