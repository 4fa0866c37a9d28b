"""``dtype-change`` and ``device-hop``: a tensor silently downcast, or moved, inside a forward.

Both walk a step's flow over its leaf calls (those that ran no traced call inside them), in
execution order: a leaf's input that differs from what the leaf before it gave is a change
between layers; a leaf's output that differs from its own inputs is a change inside it. A
container whose output changed with no leaf inside it explaining the change (a cast at the end
of its forward) is the place for the last case.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from tracer.checks.builtin.layers import is_float, precision
from tracer.checks.builtin.spans import Where, finding, layer_name, spans, step_text
from tracer.checks.findings import Finding
from tracer.checks.rules import Rule
from tracer.checks.view import RunRecords, StepFacts
from tracer.records import CallRecord, TensorRecord


@dataclass(frozen=True, slots=True)
class _Change:
    seq: int
    before: str
    after: str
    source: str  # the layer whose output had ``before``, or "" for the layer's own inputs


@dataclass(frozen=True)
class _Walk:
    """What a change is: the value compared, the tensors that count, which changes matter."""

    value: Callable[[TensorRecord], str]
    counts: Callable[[TensorRecord], bool]
    matters: Callable[[str, str], bool]  # (before, after) -> a change worth a finding
    excused: Callable[[CallRecord, str, str], bool]  # a change inside a call that is intended
    given: Callable[[], frozenset[str]] = frozenset  # values fed to the model (the user's)
    varies: Callable[[StepFacts], bool] = lambda facts: True  # can the step hold a change


def _changes(
    flow: Sequence[CallRecord], leaves: Sequence[bool], walk: _Walk
) -> dict[Where, _Change]:
    """Each tensor slot of one step where a value changed in a way that matters."""
    found: dict[Where, _Change] = {}
    explained: set[int] = set()
    previous: tuple[str, str] | None = None  # (value, layer) of the last leaf's output
    for call, leaf in zip(flow, leaves, strict=True):
        if not leaf:
            continue
        ins = [t for t in call.inputs if walk.counts(t)]
        outs = [t for t in call.outputs if walk.counts(t)]
        if previous is not None:
            for t in ins:
                value = walk.value(t)
                if walk.matters(previous[0], value) and value not in walk.given():
                    found[Where.of(call, t)] = _Change(call.seq, previous[0], value, previous[1])
                    explained.add(call.seq)
        for t in outs:
            before = _source(ins, t, walk)
            if before is None:
                continue
            explained.add(call.seq)
            if not walk.excused(call, before, walk.value(t)):
                found[Where.of(call, t)] = _Change(call.seq, before, walk.value(t), "")
        if outs:
            previous = (walk.value(outs[0]), call.name)
    _containers(flow, leaves, walk, found, explained)
    return found


def _source(ins: list[TensorRecord], out: TensorRecord, walk: _Walk) -> str | None:
    """The input value ``out`` changed from, when it changed in a way that matters."""
    for t in ins:
        if walk.matters(walk.value(t), walk.value(out)):
            return walk.value(t)
    return None


def _containers(
    flow: Sequence[CallRecord],
    leaves: Sequence[bool],
    walk: _Walk,
    found: dict[Where, _Change],
    explained: set[int],
) -> None:
    """A container's change that no call inside it explains (a cast at the end of forward)."""
    for i, call in enumerate(flow):
        if leaves[i]:
            continue
        end = i + 1
        while end < len(flow) and flow[end].depth > call.depth:
            end += 1
        if any(flow[j].seq in explained for j in range(i + 1, end)):
            continue
        ins = [t for t in call.inputs if walk.counts(t)]
        for t in call.outputs:
            before = _source(ins, t, walk) if walk.counts(t) else None
            if before is not None and not walk.excused(call, before, walk.value(t)):
                found[Where.of(call, t)] = _Change(call.seq, before, walk.value(t), "")


def _collect(records: RunRecords, walk: _Walk) -> Iterator[tuple[Where, list, dict]]:
    hits: dict[Where, list[tuple[int, int]]] = {}
    seen: dict[tuple[Where, int], _Change] = {}
    varied = [step for step in records.steps if walk.varies(records.facts[step])]
    for step, flow in records.flows_at(varied):
        for where, change in _changes(flow, records.leaves[step], walk).items():
            hits.setdefault(where, []).append((step, change.seq))
            seen[where, step] = change
    for where, points in hits.items():
        yield where, points, {step: seen[where, step] for step in (s for s, _ in points)}


def _given(records: RunRecords, field: str) -> Callable[[], frozenset[str]]:
    """The values of what the user fed the model (each step's outermost call's own tensor
    inputs), read the first time a change asks for them."""

    @functools.cache
    def given() -> frozenset[str]:
        first: dict[int, int] = {}
        for step, seq in records.call_values(()):
            first.setdefault(step, seq)
        rows = records.values(("input",), (field, "dtype"))
        return frozenset(value for step, seq, value, dtype in rows if dtype and first[step] == seq)

    return given


def _dtype_walk(records: RunRecords) -> _Walk:
    given = _given(records, "dtype")

    def matters(before: str, after: str) -> bool:
        return (
            precision(after) < precision(before)
            and after not in records.model_dtypes
            and after not in given()
        )

    def excused(call: CallRecord, before: str, after: str) -> bool:
        # a layer with float parameters that returns a lower precision than it was given runs
        # under autocast (mixed precision on purpose): a Linear cannot do that by itself
        return call.kind == "module" and bool(records.param_dtypes.get(call.module))

    def varies(facts: StepFacts) -> bool:
        return sum(1 for dtype in facts.dtypes if dtype.startswith(("float", "bfloat"))) > 1

    return _Walk(lambda t: t.dtype, is_float, matters, excused, varies=varies)


def check_dtype_change(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding]:
    params = ", ".join(sorted(records.model_dtypes)) or "not recorded"
    for where, points, changes in _collect(records, _dtype_walk(records)):
        for span in spans(points, records.steps):
            change = changes[span.first]
            how = (
                f"after {change.source} gave {change.before}"
                if change.source
                else (f"from its {change.before} input")
            )
            yield finding(
                "dtype-change",
                "warning",
                where,
                span,
                f"{layer_name(where)}'s {where.role} {where.slot} is {change.after} {how}, "
                f"at {step_text(span.first, span.until)}: a silent downcast (the model's "
                f"parameters are {params})",
            )


def _device_walk(records: RunRecords) -> _Walk:
    def device(t: TensorRecord) -> str:
        return t.device

    return _Walk(
        device,
        lambda t: t.is_tensor and bool(t.device),
        lambda before, after: before != after,
        lambda call, before, after: False,
        _given(records, "device"),
        lambda facts: len(facts.devices - {""}) > 1,
    )


def check_device_hop(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding]:
    for where, points, changes in _collect(records, _device_walk(records)):
        for span in spans(points, records.steps):
            change = changes[span.first]
            how = (
                f"after {change.source} gave it on {change.before}"
                if change.source
                else (f"from its input on {change.before}")
            )
            yield finding(
                "device-hop",
                "warning",
                where,
                span,
                f"{layer_name(where)}'s {where.role} {where.slot} is on {change.after} {how}, "
                f"at {step_text(span.first, span.until)}: a copy between devices inside the "
                "forward",
            )


DTYPE_CHANGE = Rule(
    name="dtype-change",
    severity="warning",
    summary=(
        "a tensor that turns into a lower-precision float between layers or inside one, where "
        "no parameter of the model has that dtype (integer to float, the dtypes fed to the "
        "model and autocast are left out)"
    ),
    check=check_dtype_change,
)

DEVICE_HOP = Rule(
    name="device-hop",
    severity="warning",
    summary="a tensor copied to another device between layers or inside one, within a forward",
    check=check_device_hop,
)
