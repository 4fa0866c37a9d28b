"""``exploding-grad`` and ``vanishing-grad``: gradient norms that change by orders of magnitude.

The measure is the per-element RMS of the gradient flowing into each output of a layer with
parameters (``l2 / sqrt(numel)``, so layers of different widths compare), read from the run's
``grad`` records (``tracer run --grads``, ``tracer.trace(grads=True)``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

from tracer.checks.builtin.layers import (
    Key,
    calls,
    grads,
)
from tracer.checks.builtin.spans import Where, finding, layer_name, spans, step_text
from tracer.checks.findings import Finding, Note
from tracer.checks.rules import Rule, Threshold
from tracer.checks.view import RunRecords

_NO_GRADS = (
    "the run recorded no gradients (tracer run --grads, tracer.trace(grads=True)): "
    "gradients not checked"
)


class _Grad(NamedTuple):
    at: tuple[Key, str]  # the layer call and the output slot the gradient flows into
    seq: int
    rms: float

    @property
    def where(self) -> Where:
        key, slot = self.at
        return Where(*key, "grad", slot)


def _rms(key: Key, seq: int, grads: Sequence[tuple[str, float, float | None]]) -> _Grad | None:
    """The RMS of the gradient into a call's largest output (``grads``: its ``grad`` records'
    slot, numel and l2); None when not recorded or zero."""
    best = None
    for grad in grads:
        if grad[1] and (best is None or grad[1] > best[1]):
            best = grad
    if best is None:
        return None
    slot, numel, l2 = best
    rms = (math.nan if l2 is None else l2) / math.sqrt(numel)
    if not math.isfinite(rms) or rms <= 0:
        return None  # a NaN is the nan rule's; a zero gradient has no ratio
    return _Grad((key, slot), seq, rms)


def _chains(records: RunRecords) -> dict[int, list[_Grad]]:
    """Per step, the gradients into its leaf layers with parameters, in flow order."""
    index = calls(records)
    learned = records.learned
    per_call: dict[tuple[int, int], list[tuple[str, float, float | None]]] = {}
    for step, seq, slot, numel, l2 in grads(records):
        key, _, leaf = index[step, seq]
        if leaf and key[2] == "module" and key[0] in learned:
            per_call.setdefault((step, seq), []).append((slot, numel or 0, l2))
    chains: dict[int, list[_Grad]] = {step: [] for step in records.steps}
    for (step, seq), found in per_call.items():  # rows come in flow order
        grad = _rms(index[step, seq][0], seq, found)
        if grad is not None:
            chains[step].append(grad)
    return chains


def grad_chain(records: RunRecords, step: int) -> list[_Grad]:
    """The gradients into the leaf layers with parameters at ``step``, in forward order."""
    return records.shared("grad-chains", _chains)[step]


def _recorded(records: RunRecords) -> bool:
    return any(facts.grads for facts in records.facts.values())


def _across_depth(
    chain: list[_Grad], factor: float, grows: bool
) -> tuple[_Grad, _Grad, float] | None:
    """The earliest layer whose gradient is ``factor`` times past a later layer's, and that one."""
    # the most extreme later layer of each position, from the end: one pass, not one per layer
    extreme: list[_Grad] = []
    for grad in reversed(chain[1:]):
        if not extreme:
            extreme.append(grad)
            continue
        best = extreme[-1]
        better = grad.rms <= best.rms if grows else grad.rms >= best.rms
        extreme.append(grad if better else best)
    extreme.reverse()  # extreme[i]: the extreme of chain[i + 1:], the first of equals
    for grad, other in zip(chain[:-1], extreme, strict=True):
        ratio = grad.rms / other.rms
        if (ratio >= factor) if grows else (ratio <= 1 / factor):
            return grad, other, ratio
    return None


_Hits = dict[Where, dict[int, tuple[int, str, float]]]  # where -> step -> (seq, text, ratio)


def _depth_hits(records: RunRecords, factor: float, grows: bool) -> _Hits:
    """Per step, the earliest layer whose gradient is ``factor`` past a later layer's."""
    hits: _Hits = {}
    word = "larger" if grows else "smaller"
    for step in records.steps:
        found = _across_depth(grad_chain(records, step), factor, grows)
        if found is not None:
            grad, other, ratio = found
            times = ratio if grows else 1 / ratio
            text = f"{times:.3g} times {word} than into {layer_name(other.where)}, nearer the loss"
            hits.setdefault(grad.where, {})[step] = (grad.seq, text, ratio)
    return hits


def _step_hits(records: RunRecords, factor: float, window: int) -> _Hits:
    """Per step, the layer nearest the loss whose gradient jumped ``factor`` over its median."""
    history: dict[tuple[Key, str], list[float]] = {}
    hits: _Hits = {}
    for step in records.steps:
        jumped: tuple[_Grad, float] | None = None
        for grad in grad_chain(records, step):
            before = history.setdefault(grad.at, [])
            if before:
                ratio = grad.rms / statistics.median(before[-window:])
                if ratio >= factor:
                    jumped = (grad, ratio)  # the last in forward order: nearest the loss
            before.append(grad.rms)
        if jumped is not None:
            grad, ratio = jumped
            text = f"{ratio:.3g} times its median over the earlier checked steps"
            hits.setdefault(grad.where, {})[step] = (grad.seq, text, ratio)
    return hits


def _findings(records: RunRecords, rule: str, *found: _Hits) -> Iterator[Finding]:
    """One finding per layer and span of steps; the first source that saw a step describes it."""
    merged: _Hits = {}
    for hits in found:
        for where, steps in hits.items():
            for step, hit in steps.items():
                merged.setdefault(where, {}).setdefault(step, hit)
    for where, steps in merged.items():
        points = [(step, hit[0]) for step, hit in steps.items()]
        for span in spans(points, records.steps):
            _, text, ratio = steps[span.first]
            yield finding(
                rule,
                "warning",
                where,
                span,
                f"the gradient into {layer_name(where)} is {text}, at "
                f"{step_text(span.first, span.until)} (RMS per element)",
                {"ratio": ratio},
            )


def check_vanishing(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    if not _recorded(records):
        yield Note(_NO_GRADS)
        return
    hits = _depth_hits(records, limits["depth_factor"], grows=False)
    yield from _findings(records, "vanishing-grad", hits)


def check_exploding(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    if not _recorded(records):
        yield Note(_NO_GRADS)
        return
    depth = _depth_hits(records, limits["depth_factor"], grows=True)
    steps = _step_hits(records, limits["step_factor"], int(limits["window"]))
    yield from _findings(records, "exploding-grad", depth, steps)


_PASCANU = (
    "Pascanu, Mikolov & Bengio 2013 (On the difficulty of training recurrent neural networks): "
    "the gradient norm can grow exponentially with the number of layers it flows back "
    "through (a product of Jacobians whose largest singular value exceeds 1), and shows as "
    "sudden spikes of orders of magnitude during training; they clip the norm at a multiple "
    "of its average over earlier updates. The defaults: three orders of magnitude across "
    "depth, or over the median of the last steps."
)
_GLOROT = (
    "Glorot & Bengio 2010 (Understanding the difficulty of training deep feedforward neural "
    "networks): with sigmoid or tanh units and the usual initialisation, back-propagated "
    "gradients shrink layer by layer towards the input, so the lower layers barely learn; "
    "Pascanu et al. 2013 describe the same product of small Jacobians for vanishing. The "
    "default: three orders of magnitude between a layer and a later one. Not checked across "
    "steps: a model that fits its data has gradients that shrink as its loss does."
)

EXPLODING = Rule(
    name="exploding-grad",
    severity="warning",
    summary="a layer's gradient orders of magnitude larger than a later layer's, or than before",
    check=check_exploding,
    thresholds=(
        Threshold(
            "depth_factor",
            1000.0,
            "how many times larger than the gradient into a later layer",
            min=1.0,
        ),
        Threshold(
            "step_factor",
            1000.0,
            "how many times larger than the median of its earlier checked steps",
            min=1.0,
        ),
        Threshold("window", 10.0, "how many earlier checked steps the median covers", min=1.0),
    ),
    source=_PASCANU,
)

VANISHING = Rule(
    name="vanishing-grad",
    severity="warning",
    summary="a layer's gradient orders of magnitude smaller than a later layer's",
    check=check_vanishing,
    thresholds=(
        Threshold(
            "depth_factor",
            1000.0,
            "how many times smaller than the gradient into a later layer",
            min=1.0,
        ),
    ),
    source=_GLOROT,
)
