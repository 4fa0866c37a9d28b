"""Comparing two runs: one traced step of each aligned call by call, plus config and parameters.

:func:`diff_flows` is a pure function over records. Calls are aligned on the key
``(module, type, kind, op, call_index)`` with a longest-matching-block sequence alignment
(:class:`difflib.SequenceMatcher`), so a layer added or removed in the middle shows as one
``added`` / ``removed`` row and everything after it still lines up. A layer whose type changed
at the same path is a different layer: it shows as removed plus added.

Each aligned pair is classified by the first structural difference found, in the order shape,
dtype, device, params (``changes`` lists all of them). A tensor slot present on one side only
counts as a shape change, except when that side recorded no tensor of its role in the whole
step (gradients traced in one run only): such roles are listed in ``FlowDiff.unrecorded`` and
not compared. ``params`` is a module whose own parameter count differs (on its first call of
the step): its weights changed shape even where its activations did not (a larger vocabulary);
a parent whose total moved only because a child's did is not a change of its own. The CLI
(``tracer diff``, ``--exit-code``) and the TUI render this one classification.

Independently, value statistics *drift* when they differ by more than ``drift_threshold``
relative to the larger magnitude (default 10%), ignoring values both below ``drift_floor`` in
magnitude; NaN against a number always drifts.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from tracer.records import (
    BUILTIN_STATS,
    CallRecord,
    ModuleRecord,
    RunInfo,
    TensorRecord,
    frozen_mapping,
)
from tracer.store.errors import StoreError

if TYPE_CHECKING:
    from tracer.store.store import Store

RowStatus = Literal["same", "shape", "dtype", "device", "params", "added", "removed"]
ROW_STATUSES: tuple[str, ...] = get_args(RowStatus)
DRIFT_STATS: tuple[str, ...] = tuple(s for s in BUILTIN_STATS if s != "numel")
DEFAULT_DRIFT_THRESHOLD = 0.1
DEFAULT_DRIFT_FLOOR = 1e-8
_STRUCTURE = ("shape", "dtype", "device")
_CHANGE_ORDER = (*_STRUCTURE, "params")
_Slots = dict[tuple[str, str], TensorRecord]  # a call's tensors by (role, slot)


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One structural difference of one tensor slot (``field``: shape, dtype, device), or of
    the module's own parameter count (``role`` "module", ``field`` "params", empty slot)."""

    role: str
    slot: str
    field: str
    left: Any
    right: Any

    def __str__(self) -> str:
        return f"{self.role} {self.slot} {self.field}: {self.left} -> {self.right}"


@dataclass(frozen=True, slots=True)
class StatDrift:
    """A value statistic of one tensor slot that moved by more than the threshold."""

    role: str
    slot: str
    stat: str
    left: float
    right: float
    relative: float  # |right - left| / max(|left|, |right|); inf when only one side is NaN

    def __str__(self) -> str:
        return f"{self.role} {self.slot} {self.stat}: {self.left:.4g} -> {self.right:.4g}"


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One aligned row: the left call, the right call (either may be None) and how they differ."""

    status: RowStatus
    left: CallRecord | None
    right: CallRecord | None
    changes: tuple[FieldChange, ...] = ()
    drift: tuple[StatDrift, ...] = ()

    @property
    def call(self) -> CallRecord:
        """Whichever side exists (the left one when both do)."""
        found = self.left or self.right
        assert found is not None
        return found

    @property
    def changed_fields(self) -> tuple[str, ...]:
        """The distinct structural fields that changed (``("shape", "dtype")``)."""
        return tuple(dict.fromkeys(c.field for c in self.changes))


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A config key whose value differs (``present_left`` / ``present_right`` for added keys)."""

    key: str
    left: Any
    right: Any
    present_left: bool = True
    present_right: bool = True


@dataclass(frozen=True, slots=True)
class ParamChange:
    """A module whose parameter counts differ (None: the module exists on one side only)."""

    module: str
    left_total: int | None
    right_total: int | None
    left_own: int | None
    right_own: int | None


@dataclass(frozen=True, slots=True)
class FlowDiff:
    """Two flows compared; ``counts`` has one entry per row status (``params`` counts rows whose
    module's own parameter count changed) plus ``drift`` and ``config``. ``unrecorded`` holds,
    per side (``"a"``, ``"b"``), the roles that side never recorded while the other did."""

    rows: tuple[DiffRow, ...]
    config: tuple[ConfigChange, ...] = ()
    params: tuple[ParamChange, ...] = ()
    counts: Mapping[str, int] = field(default_factory=lambda: frozen_mapping({}))
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    unrecorded: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: frozen_mapping({"a": (), "b": ()})
    )
    run_a: RunInfo | None = None
    run_b: RunInfo | None = None
    step_a: int | None = None
    step_b: int | None = None

    @property
    def structural(self) -> bool:
        """True when a call differs in shape, dtype, device or own parameter count, a call was
        added or removed, or any module's own parameter count differs (``--exit-code``)."""
        if any(r.status != "same" for r in self.rows):
            return True
        return any(p.left_own != p.right_own for p in self.params)

    @property
    def identical(self) -> bool:
        """True when structure, config and parameter counts all match (drift aside)."""
        return not self.config and not self.params and all(r.status == "same" for r in self.rows)


def _key(call: CallRecord) -> tuple[str, str, str, str | None, int]:
    return (call.module, call.type, call.kind, call.op, call.call_index)


def _slots(call: CallRecord) -> _Slots:
    return {(t.role, t.slot): t for t in call.tensors}


def _changes(a: _Slots, b: _Slots, recorded: tuple[set[str], set[str]]) -> list[FieldChange]:
    changes = []
    for role, slot in list(a) + [k for k in b if k not in a]:
        ta, tb = a.get((role, slot)), b.get((role, slot))
        if ta is None or tb is None:
            if role not in recorded[0] or role not in recorded[1]:
                continue  # one side never recorded this role: not a difference of the model
            changes.append(FieldChange(role, slot, "shape", ta and ta.shape, tb and tb.shape))
            continue
        for name in _STRUCTURE:
            va, vb = getattr(ta, name), getattr(tb, name)
            if va != vb:
                changes.append(FieldChange(role, slot, name, va, vb))
    return changes


def _drifted(a: float, b: float, threshold: float, floor: float) -> float | None:
    if math.isnan(a) or math.isnan(b):
        return None if math.isnan(a) and math.isnan(b) else math.inf
    if a == b:
        return None
    scale = max(abs(a), abs(b))
    if math.isinf(scale):
        return math.inf
    if scale < floor:
        return None
    relative = abs(b - a) / scale
    return relative if relative > threshold else None


def _drift(a: _Slots, b: _Slots, threshold: float, floor: float) -> list[StatDrift]:
    found = []
    for (role, slot), ta in a.items():
        tb = b.get((role, slot))
        if tb is None:
            continue
        for stat in DRIFT_STATS:
            if stat in ta.stats and stat in tb.stats:
                va, vb = float(ta.stats[stat]), float(tb.stats[stat])
                relative = _drifted(va, vb, threshold, floor)
                if relative is not None:
                    found.append(StatDrift(role, slot, stat, va, vb, relative))
    return found


def _pair(
    left: CallRecord, right: CallRecord, context: _Context, threshold: float, floor: float
) -> DiffRow:
    a, b = _slots(left), _slots(right)
    changes = _changes(a, b, context.recorded)
    if left.kind == "module" and left.call_index == 0 and left.module in context.own_params:
        own_a, own_b = context.own_params[left.module]
        changes.append(FieldChange("module", "", "params", own_a, own_b))
    fields = {c.field for c in changes}
    status = next((s for s in _CHANGE_ORDER if s in fields), "same")
    drift = _drift(a, b, threshold, floor)
    return DiffRow(status, left, right, tuple(changes), tuple(drift))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Context:
    """What classifying one row needs from the whole comparison."""

    recorded: tuple[set[str], set[str]]  # the roles each side recorded in its step
    own_params: Mapping[str, tuple[int | None, int | None]]  # modules whose own count differs


def recorded_roles(flow: Sequence[CallRecord]) -> set[str]:
    """The tensor roles a step recorded at all (``grad`` only when gradients were traced)."""
    return {t.role for call in flow for t in call.tensors}


def align(
    flow_a: Sequence[CallRecord],
    flow_b: Sequence[CallRecord],
    *,
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    drift_floor: float = DEFAULT_DRIFT_FLOOR,
    params: Sequence[ParamChange] = (),
) -> list[DiffRow]:
    """Align two flows call by call and classify every row (``params``: the modules whose
    parameter counts differ, from :func:`param_changes`)."""
    own = {p.module: (p.left_own, p.right_own) for p in params if p.left_own != p.right_own}
    context = _Context((recorded_roles(flow_a), recorded_roles(flow_b)), own)
    matcher = difflib.SequenceMatcher(
        None, [_key(c) for c in flow_a], [_key(c) for c in flow_b], autojunk=False
    )
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for left, right in zip(flow_a[i1:i2], flow_b[j1:j2], strict=True):
                rows.append(_pair(left, right, context, drift_threshold, drift_floor))
            continue
        rows.extend(DiffRow("removed", call, None) for call in flow_a[i1:i2])
        rows.extend(DiffRow("added", None, call) for call in flow_b[j1:j2])
    return rows


_ABSENT = object()


def config_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[ConfigChange]:
    """Config keys whose values differ, in the left config's order then new keys."""
    changes = []
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if va != vb:
            changes.append(
                ConfigChange(
                    key,
                    None if va is _ABSENT else va,
                    None if vb is _ABSENT else vb,
                    va is not _ABSENT,
                    vb is not _ABSENT,
                )
            )
    return changes


def param_changes(a: Sequence[ModuleRecord], b: Sequence[ModuleRecord]) -> list[ParamChange]:
    """Modules whose own or total parameter counts differ (or that exist on one side only)."""
    left, right = {m.path: m for m in a}, {m.path: m for m in b}
    changes = []
    for path in list(left) + [p for p in right if p not in left]:
        ma, mb = left.get(path), right.get(path)
        counts_a = (ma.params_total, ma.params_own) if ma else (None, None)
        counts_b = (mb.params_total, mb.params_own) if mb else (None, None)
        if counts_a != counts_b:
            changes.append(ParamChange(path, counts_a[0], counts_b[0], counts_a[1], counts_b[1]))
    return changes


def diff_flows(
    flow_a: Sequence[CallRecord],
    flow_b: Sequence[CallRecord],
    *,
    config_a: Mapping[str, Any] | None = None,
    config_b: Mapping[str, Any] | None = None,
    modules_a: Sequence[ModuleRecord] = (),
    modules_b: Sequence[ModuleRecord] = (),
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    drift_floor: float = DEFAULT_DRIFT_FLOOR,
) -> FlowDiff:
    """Compare two flows, their configs and their modules' parameter counts."""
    params = param_changes(modules_a, modules_b)
    rows = align(
        flow_a, flow_b, drift_threshold=drift_threshold, drift_floor=drift_floor, params=params
    )
    config = config_changes(config_a or {}, config_b or {})
    counts = Counter({status: 0 for status in ROW_STATUSES})
    counts.update(row.status for row in rows)
    counts["drift"] = sum(1 for row in rows if row.drift)
    counts["config"] = len(config)
    roles_a, roles_b = recorded_roles(flow_a), recorded_roles(flow_b)
    unrecorded = {"a": _roles(roles_b - roles_a), "b": _roles(roles_a - roles_b)}
    if not flow_a or not flow_b:  # a side with no step at all: every row is added or removed
        unrecorded = {"a": (), "b": ()}
    return FlowDiff(
        tuple(rows),
        tuple(config),
        tuple(params),
        frozen_mapping(counts),
        drift_threshold,
        frozen_mapping(unrecorded),
    )


def _roles(roles: set[str]) -> tuple[str, ...]:
    order = ("input", "output", "grad", "param_grad")
    return tuple(sorted(roles, key=lambda r: (order.index(r) if r in order else len(order), r)))


def pick_steps(
    steps_a: Sequence[int], steps_b: Sequence[int], step_a: int | None, step_b: int | None
) -> tuple[int | None, int | None]:
    """Default steps: the given ones, else the first step both runs traced, else each one's
    first (one given step is used for both runs when the other has it)."""
    if step_a is None and step_b is None:
        common = sorted(set(steps_a) & set(steps_b))
        if common:
            return common[0], common[0]
        return (steps_a[0] if steps_a else None), (steps_b[0] if steps_b else None)
    if step_a is None:
        step_a = step_b if step_b in steps_a else (steps_a[0] if steps_a else None)
    if step_b is None:
        step_b = step_a if step_a in steps_b else (steps_b[0] if steps_b else None)
    return step_a, step_b


def diff_runs(
    store: Store,
    ref_a: int | str,
    ref_b: int | str,
    step_a: int | None = None,
    step_b: int | None = None,
) -> FlowDiff:
    """Load two runs from ``store`` and compare one traced step of each."""
    run_a, run_b = store.get_run(ref_a), store.get_run(ref_b)
    steps_a, steps_b = store.steps(run_a.id), store.steps(run_b.id)
    step_a, step_b = pick_steps(steps_a, steps_b, step_a, step_b)
    for run, step, steps in ((run_a, step_a, steps_a), (run_b, step_b, steps_b)):
        if step is not None and step not in steps:
            shown = ", ".join(map(str, steps[:10])) or "none"
            raise StoreError(
                f"run {run.id} ({run.name}) has no traced step {step} (traced: {shown})"
            )
    result = diff_flows(
        store.flow(run_a.id, step_a) if step_a is not None else [],
        store.flow(run_b.id, step_b) if step_b is not None else [],
        config_a=run_a.config,
        config_b=run_b.config,
        modules_a=store.module_tree(run_a.id),
        modules_b=store.module_tree(run_b.id),
    )
    return replace(result, run_a=run_a, run_b=run_b, step_a=step_a, step_b=step_b)
