"""The report's flow table (one traced step) and each layer's statistics across steps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tracer.checks import Finding, LayerKey
from tracer.records import CallRecord, TensorRecord
from tracer.web.report_findings import holds_at
from tracer.web.report_html import LINE_LIMIT, Cell, esc, num, plural, row, shape, table, tag
from tracer.web.report_svg import sparkline

#: Extra outputs (an LSTM's h and c) listed under a call's first output, at most.
EXTRA_OUTPUTS = 3
#: Input shapes listed in a row, at most.
INPUTS = 3
#: Deepest indentation of the layer column.
MAX_DEPTH = 8
SEVERITY_ORDER = ("error", "warning", "info")


def label(call: CallRecord) -> str:
    """A call as the TUI names it: the module path (``<root>``), ``#n`` for a repeated call,
    ops as ``· view``."""
    if call.kind == "op":
        return f"· {call.op or 'op'}"
    return (call.module or "<root>") + (f" #{call.call_index}" if call.call_index else "")


def primary(tensors: Sequence[TensorRecord]) -> TensorRecord | None:
    """The first tensor among records (what most layers are about)."""
    return next((t for t in tensors if t.is_tensor), None)


def _nonfinite(record: TensorRecord | None) -> tuple[int, int]:
    if record is None:
        return 0, 0
    return int(record.stats.get("nan_count", 0) or 0), int(record.stats.get("inf_count", 0) or 0)


def _inputs(call: CallRecord) -> str:
    shown = [shape(t) for t in call.inputs[:INPUTS]]
    more = len(call.inputs) - INPUTS
    return ", ".join(shown) + (f" <span class=muted>+{more}</span>" if more > 0 else "") or "-"


def _outputs(call: CallRecord) -> str:
    if not call.outputs:
        return "-"
    first, *rest = call.outputs
    lines = [shape(first)]
    for t in rest[:EXTRA_OUTPUTS]:
        lines.append(tag("div", f"<span class=muted>{esc(t.slot)}</span> {shape(t)}", "extra"))
    if len(rest) > EXTRA_OUTPUTS:
        lines.append(tag("div", f"+{len(rest) - EXTRA_OUTPUTS} more", "extra muted"))
    return "".join(lines)


def _moved(field: str, call: CallRecord) -> str:
    """The output's dtype or device, ``int64 → float32`` when the input's differs."""
    out, given = primary(call.outputs), primary(call.inputs)
    if out is None:
        return esc(getattr(given, field)) if given is not None else "-"
    value = getattr(out, field)
    if given is not None and getattr(given, field) != value:
        return f"{esc(getattr(given, field))} → {esc(value)}"
    return esc(value)


def _stats(call: CallRecord) -> list[tuple[str, str]]:
    out = primary(call.outputs)
    stats = out.stats if out is not None else {}
    zeros = stats.get("zero_frac")
    nan, inf = _nonfinite(out)
    bad = " ".join(f"{n:,} {w}" for n, w in ((nan, "NaN"), (inf, "Inf")) if n)
    cells = [(num(stats.get(s)), "num") for s in ("mean", "std", "min", "max")]
    zero_text = "-" if zeros is None else f"{float(zeros) * 100:.3g}%"
    cells.append((esc(zero_text), "num"))
    cells.append((esc(bad) if bad else "", "num bad" if bad else "num"))
    return cells


def _flag(found: Sequence[Finding], step: int | None) -> tuple[str, str]:
    """The flag cell and the row's class for a layer's findings."""
    if not found:
        return "", ""
    here = [f for f in found if holds_at(f, step)]
    chosen = here or list(found)
    worst = min(chosen, key=lambda f: SEVERITY_ORDER.index(f.severity)).severity
    title = esc("\n".join(f"{f.rule}: {f.message}" for f in chosen[:8]), 2000)
    where = "here" if here else "elsewhere"
    mark = tag("span", "⚑", f"flag sev-{esc(worst)}", title=title)
    return mark, f"flag-{where} flag-{esc(worst)}"


def _flow_row(call: CallRecord, step: int | None, found: Sequence[Finding]) -> str:
    flag, flag_cls = _flag(found, step)
    depth = min(call.depth, MAX_DEPTH)
    cells: list[Cell] = [
        (str(call.seq), "num muted"),
        (esc(label(call)), f"layer mono d{depth}"),
        (esc(call.type), "type"),
        (_inputs(call), "mono"),
        (_outputs(call), "mono"),
        (_moved("dtype", call), "mono"),
        (_moved("device", call), "mono"),
        *_stats(call),
        (flag, "flagcell"),
    ]
    kind = "op" if call.kind == "op" else "mod"
    return row(cells, f"call {kind} {flag_cls}".strip())


def flow_section(
    flow: Sequence[CallRecord],
    step: int | None,
    steps: Sequence[int],
    flags: Mapping[LayerKey, list[Finding]],
    limit: int,
) -> str:
    """Every call of one traced step: shapes, dtypes, devices, the output's statistics."""
    if step is None:
        body = tag("p", "This run recorded no traced step.", "muted")
        return tag("section", tag("h2", "Flow") + body, id_="flow")
    shown = flow[:limit]
    ops = sum(1 for c in flow if c.kind == "op")
    intro = (
        f"Step {step} ({plural(len(steps), 'traced step')}: {_step_range(steps)}). "
        f"{plural(len(flow), 'call')}, {plural(ops, 'op')} (· marks functional ops). "
        "Statistics are of each call's first output."
    )
    if len(flow) > limit:
        intro += f" The first {limit:,} calls are shown."
    head = ["#", "layer", "type", "inputs", "outputs", "dtype", "device"]
    head += ["mean", "std", "min", "max", "zeros", "nan/inf", ""]
    rows = [_flow_row(c, step, flags.get(LayerKey.of(c), ())) for c in shown]
    tools = (
        '<div class="tools"><input type="search" class="filter" data-table="flow-table" '
        'placeholder="Filter layers" aria-label="Filter layers">'
        '<label><input type="checkbox" class="hide-ops" data-table="flow-table"> hide ops'
        "</label></div>"
    )
    body = table(head, rows, "flow", numeric=(0, 7, 8, 9, 10, 11, 12), id_="flow-table")
    return tag(
        "section",
        tag("h2", "Flow") + tag("p", esc(intro, LINE_LIMIT), "muted") + tools + body,
        id_="flow",
    )


def _step_range(steps: Sequence[int]) -> str:
    if not steps:
        return "none"
    return f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"


def _record(call: CallRecord, role: str) -> TensorRecord | None:
    return primary(call.outputs if role == "output" else [t for t in call.grads if t.role == role])


def _series(calls: Sequence[CallRecord], stat: str, role: str) -> list[tuple[int, float]]:
    """``(step, value)`` per call; NaN where the tensor held only NaN or Inf (no finite value
    to take the statistic over), so that the sparkline marks it."""
    points = []
    for call in calls:
        record = _record(call, role)
        if record is not None and stat in record.stats:
            points.append((call.step, float(record.stats[stat])))
        elif record is not None and any(_nonfinite(record)):
            points.append((call.step, math.nan))
    return points


def _choose(
    flow: Sequence[CallRecord], flags: Mapping[LayerKey, list[Finding]], limit: int
) -> list[CallRecord]:
    """At most ``limit`` calls: the flagged ones first, then the rest in flow order."""
    marked = [c for c in flow if LayerKey.of(c) in flags]
    chosen = {c.seq for c in marked[:limit]}
    for call in flow:
        if len(chosen) >= limit:
            break
        chosen.add(call.seq)
    return [c for c in flow if c.seq in chosen]


def _spark(points: Sequence[tuple[int, float]], what: str) -> Cell:
    """A sparkline with the last value beside it."""
    last = tag("span", num(points[-1][1]), "last") if points else ""
    return tag("div", sparkline(points, what) + last, "sparkcell"), "spark"


def _layer_row(call: CallRecord, calls: Sequence[CallRecord], grads: bool) -> str:
    mean, std = _series(calls, "mean", "output"), _series(calls, "std", "output")
    bad = [c.step for c in calls if any(_nonfinite(_record(c, "output")))]
    cells: list[Cell] = [
        (esc(label(call)), f"layer mono d{min(call.depth, MAX_DEPTH)}"),
        (esc(call.type), "type"),
        _spark(mean, "mean"),
        _spark(std, "std"),
    ]
    if grads:
        cells.append(_spark(_series(calls, "l2", "grad"), "gradient L2"))
    nonfinite = ", ".join(map(str, bad[:6])) + (f" +{len(bad) - 6}" if len(bad) > 6 else "")
    cells.append((esc(nonfinite), "num bad") if nonfinite else "")
    return row(cells, "op" if call.kind == "op" else "mod")


def layers_section(
    flow: Sequence[CallRecord],
    history: Mapping[LayerKey, Sequence[CallRecord]],
    sampled: Sequence[int],
    steps: Sequence[int],
    flags: Mapping[LayerKey, list[Finding]],
    limit: int,
) -> str:
    """Each layer's output mean and std (and gradient norm) across the sampled steps."""
    if not flow:
        return ""
    chosen = _choose(flow, flags, limit)
    grads = any(t.role == "grad" for calls in history.values() for c in calls for t in c.grads)
    intro = (
        f"Each layer's first output across {plural(len(sampled), 'traced step')}"
        + (
            f" (sampled evenly from {len(steps):,}, first and last included)"
            if len(sampled) < len(steps)
            else ""
        )
        + f"; {len(chosen):,} of {plural(len(flow), 'call')}"
        + (" (flagged layers first, then in flow order)." if len(chosen) < len(flow) else ".")
        + " Hover a line for its values; red marks are NaN or Inf."
    )
    head = ["layer", "type", "output mean", "output std"]
    head += ["gradient L2"] if grads else []
    head.append("non-finite at steps")
    rows = [_layer_row(c, history.get(LayerKey.of(c), (c,)), grads) for c in chosen]
    body = table(head, rows, "layers", id_="layers-table")
    return tag(
        "section",
        tag("h2", "Layers across steps") + tag("p", esc(intro, LINE_LIMIT), "muted") + body,
        id_="layers",
    )
