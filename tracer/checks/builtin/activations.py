"""``saturation`` and ``dead-units``: activations pinned at their bounds, or at zero."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from tracer.checks.builtin.layers import (
    ACTIVATIONS,
    DTYPE,
    NEAR_ONE_FRAC,
    NEAR_ZERO_FRAC,
    NUMEL,
    SEQ,
    SLOT,
    STEP,
    ZERO_FRAC,
    Key,
    Row,
    bounded_kind,
    calls,
    dead_stat,
    layer_outputs,
    shapes,
    softmax_dim,
)
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
from tracer.checks.view import RunRecords

_NOT_RECORDED = (
    "near_zero_frac and near_one_frac are not recorded in this run (runs recorded by an older "
    "layer-tracer lack them): {what} not checked"
)
_BOUNDS = {
    "sigmoid": "within 0.01 of 0 or 1",
    "tanh": "within 0.01 of -1 or 1",
    "softmax": "rows with one value >= 0.99",
}


def saturated(
    kind: str, near_zero: float | None, near_one: float | None, shape: tuple[int, ...], extra: str
) -> float | None:
    """The fraction of a bounded activation's output at its bounds; None when not recorded."""
    if near_one is None:
        return None
    if kind == "sigmoid":
        return None if near_zero is None else near_zero + near_one
    if kind == "softmax":
        # at most one value of a row is >= 0.99: the fraction of rows so peaked
        if not shape:
            return None
        size = shape[softmax_dim(extra, len(shape))]
        return min(1.0, near_one * size)
    return near_one


def _activations(records: RunRecords) -> dict[Key, tuple[str, str, list[Row]]]:
    """Each activation module's float outputs of more than one value, in flow order, with its
    type and its module's extra_repr."""
    found: dict[Key, tuple[str, str, list[Row]]] = {}
    for key, (type_name, rows, _) in layer_outputs(records).items():
        if type_name not in ACTIVATIONS or key[2] != "module":
            continue
        module = records.module_records.get(key[0])
        extra = module.extra_repr if module is not None else ""
        floats = [
            row
            for row in rows
            if row[DTYPE].startswith(("float", "bfloat")) and (row[NUMEL] or 0) > 1
        ]
        if floats:
            found[key] = (type_name, extra, floats)
    return found


def _last_learned(records: RunRecords) -> dict[int, int]:
    """Per step, the flow position of the last call of a module with parameters."""
    last: dict[int, int] = {}
    learned = records.learned
    for (step, seq), (key, _, _) in calls(records).items():
        if key[0] in learned and key[2] == "module":
            last[step] = seq
    return last


def check_saturation(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    last_learned: dict[int, int] | None = None
    layers = records.shared("activation-layers", _activations)
    for key, (type_name, extra, rows) in layers.items():
        kind = bounded_kind(type_name, extra)
        if kind is None:
            continue
        if last_learned is None:
            last_learned = _last_learned(records)
        hits: dict[Where, list[tuple[int, int]]] = {}
        fractions: dict[tuple[Where, int], float] = {}
        for row in rows:
            step, seq, slot = row[STEP], row[SEQ], row[SLOT]
            if seq > last_learned.get(step, -1):
                continue  # the model's output (a confident prediction), not a hidden layer
            shape = shapes(records)[step, seq, slot] if kind == "softmax" else ()
            fraction = saturated(kind, row[NEAR_ZERO_FRAC], row[NEAR_ONE_FRAC], shape, extra)
            if fraction is None:
                yield Note(_NOT_RECORDED.format(what="saturation"))
                continue
            if fraction >= limits["fraction"]:
                where = Where(*key, "output", slot)
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
                    f"{layer_name(where)} ({type_name}) is saturated: {percent(first)} of its "
                    f"output {where.slot} {_BOUNDS[kind]} at {step_text(span.first, span.until)}"
                    " (little gradient flows back through it)",
                    {"fraction": first},
                )


def check_dead_units(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    layers = records.shared("activation-layers", _activations)
    for key, (type_name, extra, rows) in layers.items():
        stat = dead_stat(type_name, extra)
        if stat is None:
            continue
        exact = stat == "zero_frac"
        hits: dict[Where, list[tuple[int, int]]] = {}
        fractions: dict[tuple[Where, int], float] = {}
        for row in rows:
            step, seq = row[STEP], row[SEQ]
            fraction = row[ZERO_FRAC] if exact else row[NEAR_ZERO_FRAC]
            if fraction is None:
                yield Note(_NOT_RECORDED.format(what=f"dead units of {type_name} layers"))
                continue
            if fraction >= limits["fraction"]:
                where = Where(*key, "output", row[SLOT])
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
                    f"{layer_name(where)} ({type_name}) has dead units: {percent(first)} of its "
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
