"""What a check reports: one finding names a rule, a layer's tensor and the steps it holds for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from tracer.records import CallKind, Role

Severity = Literal["error", "warning", "info"]

#: Severities from the most to the least serious (their order in tables and exit codes).
SEVERITIES: Final[tuple[Severity, ...]] = ("error", "warning", "info")

_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a rule found wrong with one tensor slot of one layer.

    ``step`` is the first traced step where it holds; ``until`` the last one when it lasts over
    several (``None`` when it was seen at one step only). ``seq`` is the call's position in the
    flow at ``step`` (findings are ordered by step, then flow position). ``figures`` holds the
    numbers behind the message (a fraction, a ratio, a count), by name.
    """

    rule: str
    severity: Severity
    module: str
    call_index: int
    kind: CallKind
    slot: str
    role: Role
    step: int
    message: str
    until: int | None = None
    op: str | None = None
    seq: int = 0
    figures: Mapping[str, float] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if not isinstance(self.figures, MappingProxyType):
            object.__setattr__(self, "figures", MappingProxyType(dict(self.figures)))

    @property
    def layer(self) -> str:
        """The layer as a person names it: the module path (``<root>``), the op after a colon."""
        name = self.module or "<root>"
        return f"{name}:{self.op}" if self.kind == "op" and self.op else name

    def to_json(self) -> dict[str, Any]:
        """The finding's fields as plain JSON values (``figures`` as an object)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "module": self.module,
            "call_index": self.call_index,
            "kind": self.kind,
            "op": self.op,
            "slot": self.slot,
            "role": self.role,
            "step": self.step,
            "until": self.until,
            "message": self.message,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True, slots=True)
class Note:
    """What a rule could not check (a statistic the run did not record): a line of the report.

    A rule yields it among its findings; the report says it once, after the rule's name.
    """

    text: str


def sort_key(finding: Finding) -> tuple[int, int, int, str, str, str]:
    """Order of a report: by step, then flow position, then severity, rule and slot."""
    return (
        finding.step,
        finding.seq,
        SEVERITIES.index(finding.severity),
        finding.rule,
        finding.role,
        finding.slot,
    )


def counts_text(counts: Mapping[Severity, int]) -> str:
    """``0 errors, 1 warning, 2 info``: how many findings of each severity."""
    parts = []
    for severity in SEVERITIES:
        n = counts.get(severity, 0)
        word = severity if n == 1 or severity == "info" else f"{severity}s"
        parts.append(f"{n} {word}")
    return ", ".join(parts)
