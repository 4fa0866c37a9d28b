"""Nested inputs and outputs: every structure a user's forward may take or return."""

from __future__ import annotations

import torch
from core.models import NestedModel, PackedLSTM
from torch import nn

import tracer
from tracer.core.walk import walk_inputs, walk_output


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
