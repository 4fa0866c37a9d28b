"""What the built-in rules share: tensor slots as keys, and per-step hits merged into spans."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tracer.checks.findings import Finding, Severity
from tracer.records import CallRecord, Role, TensorRecord


@dataclass(frozen=True, slots=True)
class Where:
    """One tensor slot of one layer call (what a finding points at)."""

    module: str
    call_index: int
    kind: str
    op: str | None
    role: Role
    slot: str

    @classmethod
    def of(cls, call: CallRecord, tensor: TensorRecord) -> Where:
        return cls(call.module, call.call_index, call.kind, call.op, tensor.role, tensor.slot)


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive checked steps ``first``..``last`` where a hit held, and the first one's seq."""

    first: int
    last: int
    seq: int

    @property
    def until(self) -> int | None:
        return self.last if self.last != self.first else None


def spans(hits: Iterable[tuple[int, int]], steps: Sequence[int]) -> list[Span]:
    """Merge ``(step, seq)`` hits into runs of consecutive checked steps (in ``steps`` order)."""
    order = {step: i for i, step in enumerate(steps)}
    merged: list[Span] = []
    previous = -2
    for step, seq in sorted(hits):
        i = order[step]
        if merged and i == previous + 1:
            merged[-1] = Span(merged[-1].first, step, merged[-1].seq)
        else:
            merged.append(Span(step, step, seq))
        previous = i
    return merged


def step_text(first: int, until: int | None) -> str:
    """``step 3`` or ``steps 3-9``."""
    return f"step {first}" if until is None else f"steps {first}-{until}"


def finding(
    rule: str,
    severity: Severity,
    where: Where,
    span: Span,
    message: str,
    figures: Mapping[str, float] | None = None,
) -> Finding:
    """A finding of ``rule`` at one tensor slot over one span of steps."""
    return Finding(
        rule=rule,
        severity=severity,
        module=where.module,
        call_index=where.call_index,
        kind="op" if where.kind == "op" else "module",
        op=where.op,
        slot=where.slot,
        role=where.role,
        step=span.first,
        until=span.until,
        seq=span.seq,
        message=message,
        figures=figures or {},
    )


def layer_name(where: Where) -> str:
    """The layer as a message names it: ``fc``, ``<root>``, ``lstm:view``."""
    name = where.module or "<root>"
    return f"{name}:{where.op}" if where.kind == "op" and where.op else name


def is_leaf(flow: Sequence[CallRecord], i: int) -> bool:
    """Whether call ``i`` ran no traced call inside it (the next call is not nested in it)."""
    return i + 1 == len(flow) or flow[i + 1].depth <= flow[i].depth


def percent(fraction: float) -> str:
    """``97%``, ``99.6%``: a fraction as a person reads it."""
    value = 100 * fraction
    return f"{value:.0f}%" if value < 99 or value >= 100 else f"{value:.1f}%"
