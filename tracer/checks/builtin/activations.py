"""``saturation`` and ``dead-units``: activations pinned at their bounds, or at zero."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from tracer.checks.builtin.layers import bounded_kind, dead_stat, is_float, softmax_dim
from tracer.checks.builtin.spans import (
    Where,
    finding,
    layer_name,
    percent,
    spans,
    step_text,
)
from tracer.checks.findings import Finding, Note
from tracer.checks.rules import Rule, Threshold
from tracer.checks.view import LayerHistory, RunRecords
from tracer.records import TensorRecord

_NOT_RECORDED = (
    "near_zero_frac and near_one_frac are not recorded in this run (runs recorded by an older "
    "layer-tracer lack them): {what} not checked"
)
_BOUNDS = {
    "sigmoid": "within 0.01 of 0 or 1",
    "tanh": "within 0.01 of -1 or 1",
    "softmax": "rows with one value >= 0.99",
}


def saturated(kind: str, tensor: TensorRecord, extra_repr: str) -> float | None:
    """The fraction of a bounded activation's output at its bounds; None when not recorded."""
    stats = tensor.stats
    near_one = stats.get("near_one_frac")
    if near_one is None:
        return None
    if kind == "sigmoid":
        near_zero = stats.get("near_zero_frac")
        return None if near_zero is None else near_zero + near_one
    if kind == "softmax":
        # at most one value of a row is >= 0.99: the fraction of rows so peaked
        if not tensor.shape:
            return None
        size = tensor.shape[softmax_dim(extra_repr, len(tensor.shape))]
        return min(1.0, near_one * size)
    return near_one


def _last_learned(records: RunRecords) -> dict[int, int]:
    """Per step, the flow position of the last call of a module with parameters."""
    last: dict[int, int] = {}
    learned = records.learned
    for step in records.steps:
        for call in records.flow(step):
            if call.module in learned and call.kind == "module":
                last[step] = call.seq
    return last


def _outputs(layer: LayerHistory) -> Iterator[tuple[int, int, TensorRecord]]:
    """(step, seq, record) of each float output of more than one value."""
    for call in layer.calls:
        for t in call.outputs:
            if is_float(t) and t.stats.get("numel", 0) > 1:
                yield call.step, call.seq, t


def check_saturation(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    last_learned: dict[int, int] | None = None
    for layer in records.layers:
        module = records.module_records.get(layer.key.module)
        extra = module.extra_repr if module is not None else ""
        kind = bounded_kind(layer.type, extra) if layer.key.kind == "module" else None
        if kind is None:
            continue
        if last_learned is None:
            last_learned = _last_learned(records)
        hits: dict[Where, list[tuple[int, int]]] = {}
        fractions: dict[tuple[Where, int], float] = {}
        for step, seq, t in _outputs(layer):
            if seq > last_learned.get(step, -1):
                continue  # the model's output (a confident prediction), not a hidden layer
            fraction = saturated(kind, t, extra)
            if fraction is None:
                yield Note(_NOT_RECORDED.format(what="saturation"))
                continue
            if fraction >= limits["fraction"]:
                where = Where(*_key(layer), t.role, t.slot)
                hits.setdefault(where, []).append((step, seq))
                fractions[where, step] = fraction
        for where, points in hits.items():
            for span in spans(points, records.steps):
                first = fractions[where, span.first]
                yield finding(
                    "saturation",
                    "warning",
                    where,
                    span,
                    f"{layer_name(where)} ({layer.type}) is saturated: {percent(first)} of its "
                    f"output {where.slot} {_BOUNDS[kind]} at {step_text(span.first, span.until)}"
                    " (little gradient flows back through it)",
                    {"fraction": first},
                )


def _key(layer: LayerHistory) -> tuple[str, int, str, str | None]:
    key = layer.key
    return key.module, key.call_index, key.kind, key.op


def check_dead_units(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    for layer in records.layers:
        module = records.module_records.get(layer.key.module)
        extra = module.extra_repr if module is not None else ""
        stat = dead_stat(layer.type, extra) if layer.key.kind == "module" else None
        if stat is None:
            continue
        hits: dict[Where, list[tuple[int, int]]] = {}
        fractions: dict[tuple[Where, int], float] = {}
        for step, seq, t in _outputs(layer):
            fraction = t.stats.get(stat)
            if fraction is None:
                yield Note(_NOT_RECORDED.format(what=f"dead units of {layer.type} layers"))
                continue
            if fraction >= limits["fraction"]:
                where = Where(*_key(layer), t.role, t.slot)
                hits.setdefault(where, []).append((step, seq))
                fractions[where, step] = fraction
        what = "zero" if stat == "zero_frac" else "within 0.01 of zero"
        for where, points in hits.items():
            for span in spans(points, records.steps):
                first = fractions[where, span.first]
                yield finding(
                    "dead-units",
                    "warning",
                    where,
                    span,
                    f"{layer_name(where)} ({layer.type}) has dead units: {percent(first)} of its "
                    f"output {where.slot} is {what} at {step_text(span.first, span.until)} "
                    "(no gradient flows through a dead unit)",
                    {"fraction": first},
                )


SATURATION = Rule(
    name="saturation",
    severity="warning",
    summary=(
        "a hidden sigmoid, tanh, hardtanh or softmax whose outputs sit at their bounds "
        "(the model's own output layer is left out: a confident prediction is no fault)"
    ),
    check=check_saturation,
    thresholds=(
        Threshold(
            "fraction",
            0.95,
            "share of output values within 0.01 of a bound (softmax: share of rows with a "
            "value >= 0.99) from which a layer is saturated",
            min=0.0,
            max=1.0,
        ),
    ),
    source=(
        "saturated sigmoid and tanh units pass back almost no gradient (their derivative is "
        "near 0 at the bounds): Glorot & Bengio 2010 watch the top hidden layer's sigmoid "
        "saturate at 0 and training stall"
    ),
)

DEAD_UNITS = Rule(
    name="dead-units",
    severity="warning",
    summary="a ReLU-like layer (ReLU, ReLU6, LeakyReLU of tiny slope, GELU, SiLU) outputting zeros",
    check=check_dead_units,
    thresholds=(
        Threshold(
            "fraction",
            0.99,
            "share of output values at zero (GELU-like: within 0.01 of zero) at a step",
            min=0.0,
            max=1.0,
        ),
    ),
    source=(
        "a ReLU unit whose input stays negative gets no gradient and never recovers "
        "(the 'dying ReLU': Maas, Hannun & Ng 2013; Lu et al. 2019)"
    ),
)
