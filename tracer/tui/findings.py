"""What the checks found, as the screens show it: counts, flow markers, table cells (no Textual)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from rich.text import Text

from tracer.tui import formatting as fmt
from tracer.tui.flow import call_identity

if TYPE_CHECKING:
    from tracer.checks import Finding, Severity
    from tracer.records import CallRecord

#: How each severity is drawn, wherever a finding shows.
SEVERITY_STYLE: dict[str, str] = {"error": "bold red", "warning": "bold yellow", "info": "dim"}

#: The marker in front of the rule names on a flagged flow row, and under a plot's step.
MARKER = "⚑"
PLOT_MARKER = "▲"

#: The runs list's flags cell for a run whose check failed.
FAILED = "?"

Identity = tuple[str, int, str, str | None]

_SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
#: The severities the runs list counts, with their letter.
_LETTERS: tuple[tuple[Severity, str], ...] = (("error", "E"), ("warning", "W"))


def identity(finding: Finding) -> Identity:
    """The call a finding is about, as :func:`tracer.tui.flow.call_identity` names calls."""
    return (finding.module, finding.call_index, finding.kind, finding.op)


def holds_at(finding: Finding, step: int) -> bool:
    """True when the finding holds at ``step`` (from its first step through ``until``)."""
    last = finding.step if finding.until is None else finding.until
    return finding.step <= step <= last


def at_step(findings: Iterable[Finding], step: int) -> dict[Identity, tuple[Finding, ...]]:
    """The findings that hold at ``step``, by the call they are about."""
    found: dict[Identity, list[Finding]] = {}
    for finding in findings:
        if holds_at(finding, step):
            found.setdefault(identity(finding), []).append(finding)
    return {key: tuple(value) for key, value in found.items()}


def of_call(findings: Iterable[Finding], call: CallRecord) -> list[Finding]:
    """The findings about one layer call (at any step), in report order."""
    wanted = call_identity(call)
    return [f for f in findings if identity(f) == wanted]


def counts_text(counts: Mapping[Severity, int] | None) -> Text:
    """The runs list's flags cell: ``2E 1W`` (errors red, warnings yellow), ``?`` when the
    check failed (``None``), empty when nothing was found."""
    if counts is None:
        return Text(FAILED, style="bold magenta")
    text = Text()
    for severity, letter in _LETTERS:
        if counts.get(severity):
            if text:
                text.append(" ")
            text.append(f"{counts[severity]}{letter}", style=SEVERITY_STYLE[severity])
    return text


def summary_text(counts: Mapping[Severity, int]) -> Text:
    """``1 error · 2 warnings · 0 info`` with each part styled by its severity."""
    text = Text()
    for severity in _SEVERITIES:
        n = counts.get(severity, 0)
        if text:
            text.append(" · ")
        noun = severity if n == 1 or severity == "info" else f"{severity}s"
        text.append(f"{n} {noun}", style=SEVERITY_STYLE[severity] if n else "dim")
    return text


def marker(findings: Sequence[Finding]) -> Text:
    """``⚑ nan dead-units`` for a flow row: each rule once, coloured by its severity."""
    if not findings:
        return Text()
    ordered = sorted(findings, key=lambda f: _rank(f.severity))
    text = Text()
    text.append(MARKER, style=SEVERITY_STYLE[ordered[0].severity])
    seen: set[str] = set()
    for finding in ordered:
        if finding.rule not in seen:
            seen.add(finding.rule)
            text.append(" ")
            text.append(fmt.cell(finding.rule, 40), style=SEVERITY_STYLE[finding.severity])
    return text


def steps_text(finding: Finding) -> str:
    """``20`` for one step, ``20-40`` for a finding that lasts."""
    if finding.until is None or finding.until == finding.step:
        return str(finding.step)
    return f"{finding.step}-{finding.until}"


def tensor_text(finding: Finding) -> str:
    """Which tensor of the call: ``output 0``, ``param_grad weight``."""
    return fmt.cell(f"{finding.role} {finding.slot}")


def cells(finding: Finding) -> list[Text]:
    """A findings-table row: severity, rule, layer, tensor, steps, message (literal text)."""
    style = SEVERITY_STYLE[finding.severity]
    return [
        Text(finding.severity, style=style),
        Text(fmt.cell(finding.rule, 40), style=style),
        Text(fmt.cell(finding.layer)),
        Text(tensor_text(finding)),
        Text(steps_text(finding), justify="right"),
        Text(fmt.cell(finding.message, 300)),
    ]


def plot_marks(findings: Iterable[Finding]) -> list[tuple[int, Severity, str]]:
    """``(first step, severity, what)`` per finding for the layer plots, by step."""
    marks = {(f.step, f.severity, f"{f.rule} ({tensor_text(f)})") for f in findings}
    return sorted(marks, key=lambda m: (m[0], _rank(m[1]), m[2]))


def _rank(severity: str) -> int:
    return list(SEVERITY_STYLE).index(severity) if severity in SEVERITY_STYLE else 99
