"""Gradient statistics: the gradient into each output and each parameter's gradient."""

from __future__ import annotations

import pytest
import torch
from core.models import SmallCNN, TwiceModel
from torch import nn

import tracer


def test_grads_output_and_parameter_gradients_recorded_with_roles() -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    x = torch.randn(4, 3, 8, 8)
    with tracer.trace(model, grads=True) as t:
        out = model(x)
        out.square().sum().backward()
        t.step()
    head = next(c for c in t.calls if c.module == "head")
    by_role = {(r.role, r.slot): r for r in head.grads}
    assert set(by_role) == {("grad", "0"), ("param_grad", "weight"), ("param_grad", "bias")}
    want = (2 * out).detach()
    assert by_role[("grad", "0")].shape == (4, 4)
    assert by_role[("grad", "0")].stats["mean"] == pytest.approx(want.mean().item(), rel=1e-5)
    weight = by_role[("param_grad", "weight")]
    assert weight.shape == (4, 8)
    assert weight.stats["l2"] == pytest.approx(model.head.weight.grad.norm().item(), rel=1e-5)


def test_grads_survive_inplace_relu_after_batchnorm() -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    with tracer.trace(model, grads=True) as t:
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        t.step()
    for path in ("features.1", "features.2", "features.4", "features.5"):
        call = next(c for c in t.calls if c.module == path)
        grad = [r for r in call.grads if r.role == "grad"]
        assert len(grad) == 1 and grad[0].shape == (2, 8, 8, 8), path
    assert t.internal_errors == 0


def test_grads_param_gradients_on_first_call_only() -> None:
    model = TwiceModel()
    with tracer.trace(model, grads=True) as t:
        model(torch.randn(3, 4)).sum().backward()
        t.step()
    first, second = (c for c in t.calls if c.module == "block")
    assert {r.slot for r in first.grads if r.role == "param_grad"} == {"weight", "bias"}
    assert not [r for r in second.grads if r.role == "param_grad"]
    assert [r.role for r in second.grads] == ["grad"]


def test_grads_after_step_are_dropped_not_misfiled() -> None:
    model = nn.Linear(3, 3)
    with tracer.trace(model, grads=True) as t:
        out = model(torch.randn(2, 3))
        t.step()
        out.sum().backward()  # step 0's output gradient arrives too late: dropped
        model(torch.randn(2, 3))
        t.step()
    first, second = t.calls
    assert first.grads == ()
    # The parameters' gradients did accumulate during step 1, so they are filed there.
    assert [(r.role, r.slot) for r in second.grads] == [
        ("param_grad", "weight"),
        ("param_grad", "bias"),
    ]


def test_grads_off_records_no_gradients() -> None:
    model = nn.Linear(3, 3)
    with tracer.trace(model) as t:
        model(torch.randn(2, 3)).sum().backward()
        t.step()
    assert t.calls[0].grads == ()
