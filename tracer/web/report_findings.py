"""The report's findings section (``--checks``) and which layers the findings flag."""

from __future__ import annotations

from collections.abc import Sequence

from tracer.checks import SEVERITIES, CheckReport, Finding, LayerKey
from tracer.web.report_html import LINE_LIMIT, Cell, esc, plural, row, table, tag


def layer_key(finding: Finding) -> LayerKey:
    """The layer call a finding points at, as the flow's calls are keyed."""
    return LayerKey(finding.module, finding.call_index, finding.kind, finding.op)


def holds_at(finding: Finding, step: int | None) -> bool:
    """Whether the finding holds at ``step`` (its first step through its last)."""
    if step is None:
        return False
    return finding.step <= step <= (finding.until if finding.until is not None else finding.step)


def flagged(report: CheckReport | None) -> dict[LayerKey, list[Finding]]:
    """A run's findings by the layer they point at."""
    found: dict[LayerKey, list[Finding]] = {}
    for finding in report.findings if report is not None else ():
        found.setdefault(layer_key(finding), []).append(finding)
    return found


def _steps(finding: Finding) -> str:
    if finding.until is None or finding.until == finding.step:
        return f"{finding.step}"
    return f"{finding.step}–{finding.until}"


def _finding_row(finding: Finding) -> str:
    where = f"{finding.role.replace('_', ' ')} {finding.slot}"
    cells: list[Cell] = [
        tag("span", esc(finding.severity), f"sev sev-{esc(finding.severity)}"),
        (esc(finding.rule), "mono"),
        (esc(finding.layer), "mono"),
        (esc(where), "mono"),
        (esc(_steps(finding)), "num"),
        esc(finding.message, LINE_LIMIT),
    ]
    return row(cells, f"finding sev-row-{esc(finding.severity)}")


def _counts(report: CheckReport) -> str:
    chips = [
        tag(
            "span",
            esc(plural(n, severity, severity if severity == "info" else None)),
            f"chip sev-{severity}" if n else "chip",
        )
        for severity, n in report.counts.items()
        if severity in SEVERITIES
    ]
    return tag("p", " ".join(chips), "chips")


def _one(report: CheckReport, label: str, limit: int) -> str:
    rules = ", ".join(report.rules) or "none"
    checked = plural(len(report.steps), "traced step")
    lines = [
        tag("h3", esc(f"{label}run {report.run.id} ({report.run.name})")),
        _counts(report),
        tag("p", esc(f"rules: {rules}; {checked} checked"), "muted"),
    ]
    lines += [tag("p", esc(note, LINE_LIMIT), "note") for note in report.notes]
    if not report.findings:
        lines.append(tag("p", "Nothing found.", "ok"))
        return "".join(lines)
    shown = report.findings[:limit]
    head = ["severity", "rule", "layer", "tensor", "steps", "message"]
    lines.append(table(head, map(_finding_row, shown), "findings", numeric=(4,)))
    if len(report.findings) > limit:
        more = len(report.findings) - limit
        lines.append(tag("p", esc(f"{plural(more, 'more finding')} not shown"), "muted"))
    return "".join(lines)


def findings_section(reports: Sequence[CheckReport], limit: int) -> str:
    """One block per checked run: severity counts, the rules that ran, the findings."""
    if not reports:
        return ""
    labels = ("A: ", "B: ") if len(reports) > 1 else ("",)
    blocks = "".join(_one(r, label, limit) for r, label in zip(reports, labels, strict=False))
    intro = tag(
        "p",
        "What <code>tracer check</code> finds; the flow table marks the flagged layers.",
        "muted",
    )
    return tag("section", tag("h2", "Findings") + intro + blocks, id_="findings")
