"""Nested inputs and outputs: every structure a user's forward may take or return."""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict, namedtuple
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from core.models import NestedModel, PackedLSTM
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tracer
from tracer.core.walk import _SKIPPED, MAX_DEPTH, walk_inputs, walk_output


def test_walk_output_lstm_tuple_gives_dotted_slots() -> None:
    out, h, c = torch.zeros(2), torch.zeros(1), torch.zeros(1)
    assert [s for s, _ in walk_output((out, (h, c)))] == ["0", "1.0", "1.1"]
    assert [s for s, _ in walk_output(out)] == ["0"]
    assert walk_output(None) == [] and walk_output(()) == []


def test_walk_inputs_positional_and_keyword_arguments() -> None:
    x, m = torch.zeros(1), torch.ones(1)
    leaves = walk_inputs((x, [x, None, 3]), {"attention_mask": m, "flag": True})
    assert [s for s, _ in leaves] == ["0", "1.0", "attention_mask"]


def test_walk_cyclic_structure_does_not_recurse_forever() -> None:
    loop: list[object] = [torch.zeros(1)]
    loop.append(loop)
    leaves = walk_output(loop)
    assert leaves[0][0] == "0"
    assert any(not isinstance(v, torch.Tensor) for _, v in leaves)


def test_trace_nested_structures_recorded_by_slot() -> None:
    model = NestedModel()
    with tracer.trace(model) as t:
        model(torch.randn(2, 4), mask=torch.ones(2, 4), note="ignored")
    root = t.flow(0)[0]
    assert [(r.slot, r.shape) for r in root.inputs] == [("0", (2, 4)), ("mask", (2, 4))]
    slots = {r.slot: r for r in root.outputs}
    assert list(slots) == [
        "pair.left",
        "pair.right",
        "data.scores",
        "mo.logits",
        "opaque",
    ]
    assert slots["data.scores"].shape == (2,)
    assert slots["opaque"].type_name == "Opaque" and not slots["opaque"].is_tensor
    assert slots["opaque"].shape == () and slots["opaque"].stats == {}
    assert slots["mo.logits"].dtype == "float32" and slots["mo.logits"].device == "cpu"


def test_trace_packed_sequence_fields_recorded() -> None:
    model = PackedLSTM()
    with tracer.trace(model) as t:
        model(torch.randn(3, 4, 3), torch.tensor([4, 2, 3]))
    lstm = next(c for c in t.calls if c.module == "lstm")
    in_slots = [r.slot for r in lstm.inputs]
    assert in_slots[:2] == ["0.data", "0.batch_sizes"]
    assert lstm.inputs[0].shape == (9, 3)
    assert [r.slot for r in lstm.outputs][:2] == ["0.data", "0.batch_sizes"]
    assert lstm.outputs[0].shape == (9, 5)
    assert {r.slot for r in lstm.outputs} >= {"1.0", "1.1"}


class WeirdOut(nn.Module):
    def forward(self, x: torch.Tensor) -> object:
        return {1: x, (2, 3): [x, b"raw"], "fn": len}


def test_trace_unknown_objects_never_crash_forward() -> None:
    model = WeirdOut()
    with tracer.trace(model) as t:
        result = model(torch.ones(2))
    assert result["fn"] is len
    slots = [(r.slot, r.type_name) for r in t.calls[0].outputs]
    assert slots == [("1", "Tensor"), ("(2, 3).0", "Tensor"), ("fn", "builtin_function_or_method")]
    assert t.internal_errors == 0


# The walk as first written, one generator per level: the oracle of the single-list walk.
def _reference_walk(value: Any, slot: str, depth: int) -> Iterator[tuple[str, Any]]:
    if isinstance(value, torch.Tensor):
        yield (slot or "0", value)
        return
    if isinstance(value, _SKIPPED):
        return
    children = _reference_children(value) if depth < MAX_DEPTH else None
    if children is None:
        yield (slot or "0", value)
        return
    for key, child in children:
        yield from _reference_walk(child, f"{slot}.{key}" if slot else key, depth + 1)


def _reference_children(value: Any) -> list[tuple[str, Any]] | None:
    try:
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            return [(name, getattr(value, name)) for name in value._fields]
        if isinstance(value, (tuple, list)):
            return [(str(i), v) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            return [(str(k), v) for k, v in value.items()]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    except Exception:
        return None
    return None


def _reference_sequence(values: Any, prefix: str) -> list[tuple[str, Any]]:
    leaves: list[tuple[str, Any]] = []
    for index, value in enumerate(values):
        slot = f"{prefix}.{index}" if prefix else str(index)
        leaves.extend(_reference_walk(value, slot, 1))
    return leaves


def _reference_output(result: Any) -> list[tuple[str, Any]]:
    if isinstance(result, (tuple, list)) and not (
        isinstance(result, tuple) and hasattr(type(result), "_fields")
    ):
        return _reference_sequence(result, "")
    return list(_reference_walk(result, "", 0))


def _reference_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    leaves = _reference_sequence(args, "")
    for key, value in kwargs.items():
        leaves.extend(_reference_walk(value, str(key), 0))
    return leaves


Pair = namedtuple("Pair", "left right")


@dataclasses.dataclass
class Holder:
    first: Any
    second: Any = None


class Colour(enum.IntEnum):
    RED = 1


class Opaque:
    pass


class BrokenMapping(Mapping[str, Any]):
    """A mapping whose items cannot be read: an opaque leaf."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no keys")

    def __len__(self) -> int:
        return 1


_leaves = st.sampled_from(
    [
        torch.zeros(2),
        torch.ones(1, dtype=torch.int64),
        nn.Parameter(torch.zeros(3)),
        None,
        True,
        7,
        2.5,
        "text",
        b"bytes",
        slice(1, 2),
        ...,
        torch.float16,
        torch.device("cpu"),
        Colour.RED,
        Opaque(),
        BrokenMapping(),
    ]
)
_structures = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "", "k.1"]), inner, max_size=3),
        st.dictionaries(st.integers(0, 3), inner, max_size=3).map(OrderedDict),
        st.tuples(inner, inner).map(lambda pair: Pair(*pair)),
        st.tuples(inner, inner).map(lambda pair: Holder(*pair)),
    ),
    max_leaves=12,
)


def _same(got: list[tuple[str, Any]], want: list[tuple[str, Any]]) -> bool:
    return [s for s, _ in got] == [s for s, _ in want] and all(
        a is b for (_, a), (_, b) in zip(got, want, strict=True)
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_structures, max_size=4).map(tuple),
    st.dictionaries(st.sampled_from(["mask", "cache", "", "x.y"]), _structures, max_size=3),
    _structures,
)
def test_walk_gives_the_slots_and_leaves_of_a_plain_recursive_walk(
    args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
) -> None:
    assert _same(walk_inputs(args, kwargs), _reference_inputs(args, kwargs))
    assert _same(walk_output(result), _reference_output(result))


def test_walk_of_a_structure_deeper_than_the_limit_ends_in_an_opaque_leaf() -> None:
    deep: Any = torch.zeros(1)
    for _ in range(MAX_DEPTH + 3):
        deep = [deep, None]
    leaves = walk_output(deep)
    assert _same(leaves, _reference_output(deep))
    (slot, leaf) = leaves[0]
    assert isinstance(leaf, list) and slot.count(".") == MAX_DEPTH - 1
