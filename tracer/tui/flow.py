"""The shape flow of one step as display rows, with the warning flags (no Textual imports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tracer.records import CallRecord, TensorRecord
from tracer.tui import formatting as fmt

if TYPE_CHECKING:
    from tracer.checks import Finding

FLAG_NONFINITE = "✗"
FLAG_ZEROS = "∅"
FLAG_SATURATED = "◐"
FLAG_MOVED = "⇄"

FLAG_HELP: dict[str, str] = {
    FLAG_NONFINITE: "NaN or Inf present",
    FLAG_ZEROS: "output all zeros",
    FLAG_SATURATED: "saturated sigmoid/tanh output",
    FLAG_MOVED: "dtype or device changed from the previous row",
}

#: Extra outputs (an LSTM's h and c) get a line each under the call, up to this many.
MAX_EXTRA_LINES = 3

_SIGMOID = {"Sigmoid", "sigmoid"}
_TANH = {"Tanh", "tanh"}


@dataclass(frozen=True, slots=True)
class FlowRow:
    """One call of a step, ready for display."""

    call: CallRecord
    label: str
    kind: str
    inputs: str
    output: str
    extra_outputs: str
    dtype: str
    device: str
    stats: Mapping[str, float]
    flags: str
    findings: tuple[Finding, ...] = ()

    @property
    def key(self) -> str:
        """A stable row key: the call's order in the step."""
        return str(self.call.seq)


def label(call: CallRecord) -> str:
    """The name shown for a call: the module path, ops as ``· view`` (the root as ``<root>``)."""
    if call.kind == "op":
        return f"· {call.op or 'op'}"
    suffix = f" #{call.call_index}" if call.call_index else ""
    return (call.module or "<root>") + suffix


def call_identity(call: CallRecord) -> tuple[str, int, str, str | None]:
    """What makes "the same call" in another step: module, call index, kind and op."""
    return (call.module, call.call_index, call.kind, call.op)


def primary(tensors: Sequence[TensorRecord]) -> TensorRecord | None:
    """The first tensor among records (the value most layers are about)."""
    return next((t for t in tensors if t.is_tensor), None)


def flags(call: CallRecord, previous: CallRecord | None) -> str:
    """The warning glyphs of a call (see :data:`FLAG_HELP`)."""
    out = primary(call.outputs)
    found = []
    if any(_nonfinite(t) for t in call.tensors):
        found.append(FLAG_NONFINITE)
    if out is not None and out.stats.get("numel", 0) and out.stats.get("zero_frac") == 1.0:
        found.append(FLAG_ZEROS)
    if out is not None and _saturated(call, out):
        found.append(FLAG_SATURATED)
    before = primary(previous.outputs) if previous is not None else None
    if out is not None and before is not None and _moved(before, out):
        found.append(FLAG_MOVED)
    return "".join(found)


def _nonfinite(t: TensorRecord) -> bool:
    return bool(t.stats.get("nan_count") or t.stats.get("inf_count"))


def _moved(before: TensorRecord, after: TensorRecord) -> bool:
    # Integer inputs turning into float activations (an embedding) is the normal flow, so only
    # a float-to-float change of precision counts as a dtype change.
    floats = before.dtype.startswith(("float", "bfloat")) and after.dtype.startswith(
        ("float", "bfloat")
    )
    return before.device != after.device or (floats and before.dtype != after.dtype)


def _saturated(call: CallRecord, out: TensorRecord) -> bool:
    """A sigmoid whose outputs sit at 0/1, or a tanh whose outputs sit at -1/+1."""
    name = call.op if call.kind == "op" else call.type
    stats = out.stats
    if name in _SIGMOID:
        # std near its ceiling of 0.5 means the values gather at both ends.
        lo, hi, std = stats.get("min"), stats.get("max"), stats.get("std")
        return (
            (std is not None and std >= 0.4)
            or (lo is not None and lo >= 0.99)
            or (hi is not None and hi <= 0.01)
        )
    if name in _TANH:
        abs_mean = stats.get("abs_mean")
        return abs_mean is not None and abs_mean >= 0.9
    return False


def shapes(tensors: Sequence[TensorRecord], names: Mapping[int, str] | None) -> str:
    """Every tensor's shape joined by commas; opaque objects by their type name."""
    return ", ".join(t.shape_text(names) for t in tensors)


def rows(
    calls: Sequence[CallRecord],
    *,
    names: Mapping[int, str] | None = None,
    ops: bool = True,
    findings: Mapping[tuple[str, int, str, str | None], Sequence[Finding]] | None = None,
) -> list[FlowRow]:
    """Display rows for a step's calls (flags compare each call with the previous shown one);
    ``findings`` that hold at this step, by :func:`call_identity`, mark their calls' rows."""
    out: list[FlowRow] = []
    previous: CallRecord | None = None
    for call in calls:
        if call.kind == "op" and not ops:
            continue
        row = _row(call, previous, names)
        found = findings.get(call_identity(call)) if findings else None
        out.append(replace(row, findings=tuple(found)) if found else row)
        previous = call
    return out


def _row(call: CallRecord, previous: CallRecord | None, names: Mapping[int, str] | None) -> FlowRow:
    first = primary(call.outputs)
    rest = [t for t in call.outputs if t is not first]
    extra = [fmt.cell(f"{t.slot} {t.shape_text(names)}") for t in rest]
    if len(extra) > MAX_EXTRA_LINES:
        extra[MAX_EXTRA_LINES - 1 :] = [f"+{len(extra) - MAX_EXTRA_LINES + 1} more outputs"]
    return FlowRow(
        call=call,
        label=fmt.cell(label(call)),
        kind=fmt.cell("op" if call.kind == "op" else call.type),
        inputs=fmt.cell(shapes([t for t in call.inputs if t.is_tensor], names)),
        output=fmt.cell(fmt.shape(first.shape, names)) if first is not None else "",
        extra_outputs="\n".join(extra),
        dtype=fmt.cell(first.dtype) if first is not None else "",
        device=fmt.cell(first.device) if first is not None else "",
        stats=first.stats if first is not None else {},
        flags=flags(call, previous),
    )
