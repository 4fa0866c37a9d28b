"""The hooks' inline path (one tensor in, one out) records exactly what the generic walker does."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from core.models import TwiceModel, mlp
from torch import nn

import tracer
import tracer.core.wrapping
from tracer.records import CallRecord

pytestmark = pytest.mark.usefixtures("probe_path")


def _records(model: nn.Module, x: torch.Tensor, **options: Any) -> list[CallRecord]:
    """Two traced steps (the second reuses the shared records of the first), durations blanked."""
    with tracer.trace(model, **options) as t:
        for _ in range(2):
            model.zero_grad()  # param_grad records show .grad: the same in both traces
            out = model(x)
            if options.get("grads"):
                out.sum().backward()
            t.step()
    return [dataclasses.replace(c, duration_s=None) for c in t.calls]


def _conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True))


@pytest.mark.parametrize("stats", [False, True])
@pytest.mark.parametrize("grads", [False, True])
@pytest.mark.parametrize("name", ["mlp", "conv_bn_inplace_relu", "called_twice"])
def test_fastpath_records_match_the_generic_walker(
    name: str, stats: bool, grads: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model, x = {
        "mlp": (mlp(3), torch.randn(3, 64)),
        "conv_bn_inplace_relu": (_conv(), torch.randn(2, 3, 8, 8)),
        "called_twice": (TwiceModel(), torch.randn(3, 4)),
    }[name]
    fast = _records(model, x, stats=stats, grads=grads)
    # With ops=True and no way to switch torch functions back on inside a forward, every
    # module call goes through the generic walker; these models run no captured op, so the
    # records must be the same, field by field.
    monkeypatch.setattr(tracer.core.wrapping, "_EnableTorchFunction", None)
    generic = _records(model, x, stats=stats, grads=grads, ops=True)
    assert [c.kind for c in generic] == ["module"] * len(generic)
    assert fast == generic
    assert all(type(c) is CallRecord for c in fast)
    assert all(type(r.shape) is tuple for c in fast for r in c.tensors)


def test_fastpath_records_are_plain_frozen_records() -> None:
    with tracer.trace(nn.Linear(4, 2)) as t:
        t.model(torch.randn(3, 4))
        t.step()
    (call,) = t.calls
    assert call == CallRecord(
        0, 0, "", "Linear", 0, "module", None, call.inputs, call.outputs, (), call.duration_s, 0
    )
    assert call.inputs[0].shape == (3, 4) and call.outputs[0].dtype == "float32"
    assert call.duration_s is not None and call.duration_s > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.seq = 3  # type: ignore[misc]
