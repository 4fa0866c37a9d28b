"""What kind of layer a call is, from its module's type name and ``extra_repr`` (no torch)."""

from __future__ import annotations

import re
from typing import Any

from tracer.checks.view import RunRecords
from tracer.records import TensorRecord

#: Activations with bounded outputs, by module type: how their saturation is measured.
BOUNDED: dict[str, str] = {
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Hardtanh": "tanh",
    "Softmax": "softmax",
}
#: ReLU-like activations whose dead units output exactly zero (``zero_frac``).
EXACT_ZERO = frozenset({"ReLU", "ReLU6", "Threshold"})
#: Smooth ReLU-like activations whose dead units output nearly zero (``near_zero_frac``).
NEAR_ZERO = frozenset({"GELU", "SiLU", "Mish", "Softplus"})
#: Every module type an activation rule may check (the rest is decided with extra_repr).
ACTIVATIONS = frozenset(BOUNDED) | EXACT_ZERO | NEAR_ZERO | {"LeakyReLU"}
#: A LeakyReLU with a slope at most this small is ReLU-like: its negative side is near zero.
TINY_SLOPE = 0.01

_NUMBER = r"(-?[0-9.]+(?:e-?[0-9]+)?)"


def _setting(extra_repr: str, name: str) -> float | None:
    found = re.search(rf"\b{name}=" + _NUMBER, extra_repr)
    try:
        return float(found.group(1)) if found else None
    except ValueError:
        return None


def bounded_kind(type_name: str, extra_repr: str) -> str | None:
    """``sigmoid``, ``tanh`` or ``softmax`` for a bounded activation; None otherwise.

    A Hardtanh counts only with its default bounds (-1, 1): ``near_one_frac`` measures those.
    """
    kind = BOUNDED.get(type_name)
    if type_name == "Hardtanh":
        low, high = _setting(extra_repr, "min_val"), _setting(extra_repr, "max_val")
        if low not in (None, -1.0) or high not in (None, 1.0):
            return None
    return kind


def dead_stat(type_name: str, extra_repr: str) -> str | None:
    """The statistic that measures a ReLU-like layer's dead units; None for other layers."""
    if type_name in EXACT_ZERO:
        return "zero_frac"
    if type_name in NEAR_ZERO:
        return "near_zero_frac"
    if type_name == "LeakyReLU":
        slope = _setting(extra_repr, "negative_slope")
        return "near_zero_frac" if slope is None or abs(slope) <= TINY_SLOPE else None
    return None


def softmax_dim(extra_repr: str, ndim: int) -> int:
    """The dimension a Softmax normalises (its ``dim=``; the last one when unset)."""
    dim = _setting(extra_repr, "dim")
    if dim is None or ndim == 0:
        return max(ndim - 1, 0)
    index = int(dim)
    return index + ndim if index < 0 else index


def is_float(tensor: TensorRecord) -> bool:
    """Whether a record is a floating-point tensor (``float32``, ``bfloat16``, ``float8_*``)."""
    return tensor.dtype.startswith(("float", "bfloat"))


#: Floating-point dtypes by precision (bits of mantissa and exponent, coarsely): a change to a
#: lower rank loses precision. float16 and bfloat16 share a rank: neither holds the other.
_RANK = {"float64": 3, "double": 3, "float32": 2, "float": 2, "float16": 1, "half": 1}


def precision(dtype: str) -> int:
    """A float dtype's precision rank (float64 3, float32 2, 16-bit 1, 8-bit 0)."""
    if dtype in _RANK:
        return _RANK[dtype]
    if dtype.startswith("bfloat16"):
        return 1
    return 0 if dtype.startswith("float8") else 2


#: The output fields the built-in rules read, read once for all of them (:func:`outputs`);
#: a row is ``(step, seq, *OUTPUT_FIELDS)``, indexed by the names below.
OUTPUT_FIELDS = (
    "slot",
    "dtype",
    "numel",
    "mean",
    "std",
    "zero_frac",
    "near_zero_frac",
    "near_one_frac",
)
STEP, SEQ, SLOT, DTYPE, NUMEL, MEAN, STD, ZERO_FRAC, NEAR_ZERO_FRAC, NEAR_ONE_FRAC = range(10)
Row = tuple[Any, ...]


def outputs(records: RunRecords) -> list[Row]:
    """Every output record's :data:`OUTPUT_FIELDS`, in flow order: read once per check and
    shared by the rules that read outputs."""
    return records.shared("outputs", lambda r: r.values(("output",), OUTPUT_FIELDS))


def grads(records: RunRecords) -> list[tuple[int, int, str, float | None, float | None]]:
    """``(step, seq, slot, numel, l2)`` of every ``grad`` record (the gradient into an
    output), in flow order: read once per check."""
    return records.shared("grads", lambda r: r.values(("grad",), ("slot", "numel", "l2")))


def shapes(records: RunRecords) -> dict[tuple[int, int, str], tuple[int, ...]]:
    """Each output's shape by (step, seq, slot), read the first time a rule asks."""

    def read(records: RunRecords) -> dict[tuple[int, int, str], tuple[int, ...]]:
        return {(r[0], r[1], r[2]): r[3] for r in records.values(("output",), ("slot", "shape"))}

    return records.shared("output-shapes", read)


Key = tuple[str, int, str, "str | None"]  # a layer call across steps: module, call_index, kind, op


#: What the built-in rules need of one call: its layer key, its type, whether it is a leaf.
Call = tuple[Key, str, bool]


def _calls(records: RunRecords) -> dict[tuple[int, int], Call]:
    found: dict[tuple[int, int], Call] = {}
    leaves = records.leaves
    at = -1
    flags: tuple[bool, ...] = ()
    for step, seq, module, call_index, kind, op, type_name in records.call_values(
        ("module", "call_index", "kind", "op", "type")
    ):
        if at != step:
            at, flags, i = step, leaves[step], 0
        found[step, seq] = ((module, call_index, kind, op), type_name, flags[i])
        i += 1
    return found


def calls(records: RunRecords) -> dict[tuple[int, int], Call]:
    """Every checked call by (step, seq), in flow order: its layer key, type and leaf flag.
    Built once per check from the skeleton, shared by the rules."""
    return records.shared("calls", _calls)


#: One layer call's outputs across steps: its type, its output rows in flow order, and
#: whether the call was a leaf at each of them.
LayerOutputs = tuple[str, list[Row], list[bool]]


def _layer_outputs(records: RunRecords) -> dict[Key, LayerOutputs]:
    index = calls(records)
    found: dict[Key, LayerOutputs] = {}
    for row in outputs(records):
        key, type_name, leaf = index[row[STEP], row[SEQ]]
        layer = found.get(key)
        if layer is None:
            layer = found[key] = (type_name, [], [])
        layer[1].append(row)
        layer[2].append(leaf)
    return found


def layer_outputs(records: RunRecords) -> dict[Key, LayerOutputs]:
    """Every layer call's output rows across the checked steps, by layer key in order of
    first appearance: one pass over the outputs, shared by the rules."""
    return records.shared("layer-outputs", _layer_outputs)
