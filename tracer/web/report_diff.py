"""The report's diff section: a :class:`FlowDiff` (``tracer diff``'s alignment and change
kinds) as tables, changed rows highlighted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tracer.checks import Finding, LayerKey
from tracer.records import CallRecord, RunInfo
from tracer.store.diff import DiffRow, FlowDiff
from tracer.web.report_flow import label, primary
from tracer.web.report_html import LINE_LIMIT, Cell, cnt, esc, num, plural, row, shape, table, tag

MARKS = {"same": "", "added": "+", "removed": "−"}
CHANGED = ("shape", "dtype", "device", "params")
#: Drifted statistics listed under a row, at most.
DRIFT_SHOWN = 3


def _side(call: CallRecord | None, role: str) -> str:
    if call is None:
        return ""
    return shape(primary(call.inputs if role == "input" else call.outputs))


def _changes(diff_row: DiffRow) -> str:
    """``output 0, 1.0, 1.1 shape; params 1,114,112 → 294,912`` (escaped)."""
    groups: dict[tuple[str, str], list[str]] = {}
    params = []
    for c in diff_row.changes:
        if c.field == "params":
            params.append(f"params {cnt(c.left)} → {cnt(c.right)}")
        else:
            groups.setdefault((c.role, c.field), []).append(esc(c.slot))
    parts = [f"{esc(role)} {', '.join(s)} {esc(f)}" for (role, f), s in groups.items()]
    detail = [
        f"{esc(c.role)} {esc(c.slot)} {esc(c.field)}: {esc(c.left)} → {esc(c.right)}"
        for c in diff_row.changes
        if c.field in ("dtype", "device")
    ]
    text = "; ".join(parts + params)
    if detail:
        text += tag("div", "; ".join(detail), "extra")
    if diff_row.drift:
        drifts = [
            f"{esc(d.role)} {esc(d.slot)} {esc(d.stat)} {num(d.left)} → {num(d.right)}"
            for d in diff_row.drift[:DRIFT_SHOWN]
        ]
        more = len(diff_row.drift) - DRIFT_SHOWN
        tail = f" +{more}" if more > 0 else ""
        text += tag("div", "drift: " + ", ".join(drifts) + tail, "extra muted drift-line")
    return text


def _flagged(diff_row: DiffRow, flags: Sequence[Mapping[LayerKey, list[Finding]]]) -> bool:
    sides = (diff_row.left, diff_row.right)
    return any(
        call is not None and LayerKey.of(call) in marks
        for call, marks in zip(sides, flags, strict=False)
    )


def _diff_row(diff_row: DiffRow, flags: Sequence[Mapping[LayerKey, list[Finding]]]) -> str:
    call, status = diff_row.call, diff_row.status
    roles = {c.role for c in diff_row.changes}
    hot_in = " chg" if "input" in roles else ""
    hot_out = " chg" if "output" in roles else ""
    mark = MARKS.get(status, "≠")
    flag = tag("span", "⚑", "flag", title="flagged by a check") if _flagged(diff_row, flags) else ""
    cells: list[Cell] = [
        (esc(mark), "mark"),
        (esc(label(call)), "layer mono"),
        (esc(call.type), "type"),
        (_side(diff_row.left, "input"), "mono" + hot_in),
        (_side(diff_row.right, "input"), "mono" + hot_in),
        (_side(diff_row.left, "output"), "mono" + hot_out),
        (_side(diff_row.right, "output"), "mono" + hot_out),
        (tag("span", esc(status), f"kind st-{status}") if status != "same" else "", ""),
        (_changes(diff_row), "changes"),
        (flag, "flagcell"),
    ]
    kind = "same" if status == "same" else ("changed" if status in CHANGED else status)
    op = " op" if call.kind == "op" else ""
    return row(cells, f"st-{kind}{op}" + (" drift" if diff_row.drift else ""))


def budget(rows: Sequence[DiffRow], limit: int) -> list[int]:
    """Indexes of at most ``limit`` rows, in order: every changed row first, then unchanged
    ones from the top."""
    changed = [i for i, r in enumerate(rows) if r.status != "same"][:limit]
    chosen = set(changed)
    for i, r in enumerate(rows):
        if len(chosen) >= limit:
            break
        if r.status == "same":
            chosen.add(i)
    return sorted(chosen)


def _rows(diff: FlowDiff, limit: int, flags: Sequence[Mapping[LayerKey, list[Finding]]]) -> str:
    out, previous = [], -1
    for i in budget(diff.rows, limit):
        if i > previous + 1:
            out.append(_gap(i - previous - 1))
        out.append(_diff_row(diff.rows[i], flags))
        previous = i
    if previous < len(diff.rows) - 1:
        out.append(_gap(len(diff.rows) - 1 - previous))
    return "".join(out)


def _gap(n: int) -> str:
    text = esc(f"… {plural(n, 'unchanged row')} not shown")
    return tag("tr", tag("td", text, "muted", colspan="10"), "gap")


def _run(run: RunInfo | None) -> str:
    return esc(f"run {run.id} ({run.name})") if run is not None else "-"


def _summary(diff: FlowDiff) -> str:
    counts = diff.counts
    changed = sum(counts.get(s, 0) for s in CHANGED)
    own = sum(1 for p in diff.params if p.left_own != p.right_own)
    chips = [
        (changed, "changed", "st-changed"),
        (counts.get("added", 0), "added", "st-added"),
        (counts.get("removed", 0), "removed", "st-removed"),
        (counts.get("same", 0), "same", ""),
        (counts.get("drift", 0), "drifted", ""),
    ]
    html = [tag("span", esc(f"{n:,} {word}"), f"chip {cls if n else ''}") for n, word, cls in chips]
    html.append(tag("span", esc(f"config: {plural(len(diff.config), 'key')} changed"), "chip"))
    html.append(tag("span", esc(f"parameters: {plural(own, 'module')} changed"), "chip"))
    return tag("p", " ".join(html), "chips")


def _verdict(diff: FlowDiff) -> str:
    if diff.structural:
        text = "The structure differs: tracer diff --exit-code exits 1 on these runs."
        return tag("p", esc(text, LINE_LIMIT), "verdict bad")
    text = "Same structure" + (" and config." if diff.identical else "; values may differ.")
    return tag("p", esc(text, LINE_LIMIT), "verdict ok")


def _config(diff: FlowDiff) -> str:
    if not diff.config:
        return ""
    rows = [
        row(
            [
                (esc(c.key), "mono"),
                (esc(repr(c.left), LINE_LIMIT) if c.present_left else "-", "mono"),
                (esc(repr(c.right), LINE_LIMIT) if c.present_right else "-", "mono chg"),
            ]
        )
        for c in diff.config
    ]
    return tag("h3", "Config") + table(["key", "A", "B"], rows, "config")


def _params(diff: FlowDiff) -> str:
    own = [p for p in diff.params if p.left_own != p.right_own]
    if not own:
        return ""
    rows = [
        row(
            [
                (esc(p.module or "<root>"), "mono"),
                (cnt(p.left_own), "num"),
                (cnt(p.right_own), "num chg"),
            ]
        )
        for p in own
    ]
    head = ["module", "own parameters A", "own parameters B"]
    return tag("h3", "Parameters") + table(head, rows, "params", numeric=(1, 2))


def _notes(diff: FlowDiff) -> list[str]:
    lines = [
        f"Not recorded in {side.upper()}: {', '.join(roles)} (not compared)."
        for side, roles in diff.unrecorded.items()
        if roles
    ]
    if not any(r.left is not None and r.right is not None for r in diff.rows):
        if diff.step_a is None or diff.step_b is None:
            lines.append("Nothing to compare: a run has no traced steps.")
        else:
            lines.append("Nothing in common: no call of one flow lines up with the other's.")
    return [tag("p", esc(line, LINE_LIMIT), "note") for line in lines]


def diff_section(
    diff: FlowDiff, limit: int, flags: Sequence[Mapping[LayerKey, list[Finding]]] = ()
) -> str:
    """The comparison: runs and steps, a verdict, config, the aligned flow, parameters."""
    head = (
        f"A: {_run(diff.run_a)} step {esc(diff.step_a)} &nbsp;·&nbsp; "
        f"B: {_run(diff.run_b)} step {esc(diff.step_b)}"
    )
    intro = (
        "Calls aligned as tracer diff aligns them: ≠ a shape, dtype, device or own parameter "
        "count changed, + added in B, − removed from B. Statistics that moved by more than "
        f"{diff.drift_threshold:.0%} are drift (show drift lists them; tracer diff --drift)."
    )
    if len(diff.rows) > limit:
        intro += f" {limit:,} of {len(diff.rows):,} rows are shown, changed rows first."
    tools = (
        '<div class="tools"><label><input type="checkbox" class="only-changes" '
        'data-table="diff-table"> only changes</label><label><input type="checkbox" '
        'class="show-drift" data-table="diff-table"> show drift</label></div>'
    )
    columns = ["", "layer", "type", "in A", "in B", "out A", "out B", "kind", "changes", ""]
    flow = table(columns, [_rows(diff, limit, flags)], "diff", id_="diff-table")
    parts = [
        tag("h2", "Diff"),
        tag("p", head, "runs"),
        _verdict(diff),
        _summary(diff),
        *_notes(diff),
        _config(diff),
        tag("h3", "Flow"),
        tag("p", esc(intro, LINE_LIMIT), "muted"),
        tools,
        flow,
        _params(diff),
    ]
    return tag("section", "".join(parts), id_="diff")
