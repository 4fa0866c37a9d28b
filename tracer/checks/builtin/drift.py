"""``drift``: a layer's output statistics moving steadily in one direction across steps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence

from tracer.checks.builtin.layers import (
    DTYPE,
    MEAN,
    SEQ,
    SLOT,
    STD,
    STEP,
    Row,
    layer_outputs,
)
from tracer.checks.builtin.spans import Span, Where, finding, layer_name, step_text
from tracer.checks.findings import Finding, Note
from tracer.checks.rules import Rule, Threshold
from tracer.checks.view import RunRecords


def steady(values: Sequence[float], share: float) -> bool:
    """Whether at least ``share`` of the steps between values go the way of the whole move."""
    total = values[-1] - values[0]
    if total == 0 or len(values) < 2:
        return False
    moves = [b - a for a, b in itertools.pairwise(values)]
    along = sum(1 for m in moves if m * total > 0)
    return along >= share * len(moves)


def _series(records: RunRecords) -> dict[Where, list[Row]]:
    """Each leaf layer's float output slots across the checked steps (their output rows)."""
    found: dict[Where, list[Row]] = {}
    for key, (_, rows, leaves) in layer_outputs(records).items():
        slots: dict[str, list[Row]] = {}
        for row, leaf in zip(rows, leaves, strict=True):
            if not leaf or row[MEAN] is None or row[STD] is None:
                continue
            if row[DTYPE].startswith(("float", "bfloat")):
                points = slots.get(row[SLOT])
                if points is None:
                    slots[row[SLOT]] = [row]
                else:
                    points.append(row)
        for slot, points in slots.items():
            found[Where(*key, "output", slot)] = points
    return found


def _moved(points: list[Row], limits: Mapping[str, float]) -> tuple[str, float] | None:
    means = [p[MEAN] for p in points]
    stds = [p[STD] for p in points]
    if not all(map(math.isfinite, means + stds)):
        return None
    share = limits["steady"]
    scale = max(stds[0], 1e-12)
    shift = (means[-1] - means[0]) / scale
    if abs(shift) >= limits["shift"] and steady(means, share):
        return f"its mean moved {shift:+.3g} standard deviations (of the first step)", shift
    if stds[0] > 0 and stds[-1] > 0:
        ratio = stds[-1] / stds[0]
        factor = limits["spread_factor"]
        if (ratio >= factor or ratio <= 1 / factor) and steady(stds, share):
            how = f"grew {ratio:.3g}-fold" if ratio > 1 else f"shrank {1 / ratio:.3g}-fold"
            return f"its standard deviation {how}", ratio
    return None


def check_drift(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    needed = int(limits["min_steps"])
    if len(records.steps) < needed:
        yield Note(f"needs {needed} checked steps, the check has {len(records.steps)}")
        return
    for where, points in _series(records).items():
        if len(points) < needed:
            continue
        moved = _moved(points, limits)
        if moved is None:
            continue
        text, figure = moved
        span = Span(points[0][STEP], points[-1][STEP], points[0][SEQ])
        yield finding(
            "drift",
            "info",
            where,
            span,
            f"{layer_name(where)}'s output {where.slot} drifts: {text} over "
            f"{step_text(span.first, span.until)}, steadily",
            {"change": figure},
        )


RULE = Rule(
    name="drift",
    severity="info",
    summary="a layer's output mean or spread moving steadily one way across the checked steps",
    check=check_drift,
    thresholds=(
        Threshold(
            "shift", 3.0, "how far the mean moves, in standard deviations of the first step", 0
        ),
        Threshold("spread_factor", 10.0, "how many times the spread grows or shrinks", 1),
        Threshold("steady", 0.8, "share of step-to-step moves in the overall direction", 0, 1),
        Threshold("min_steps", 5.0, "checked steps needed to call a move steady", min=2),
    ),
)
