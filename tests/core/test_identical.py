"""Tracing never changes what the model computes: outputs and gradients are bit-identical."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from core.models import ArticleLSTM, DictModel, SmallCNN, TwiceModel, transformer
from torch import nn

import tracer
from tracer.core.walk import walk_output

CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[Any, ...]]]] = {
    "article_lstm": (
        lambda: ArticleLSTM(vocab=200, embed=30, hidden=64),
        lambda: (torch.randint(0, 200, (8, 40)),),
    ),
    "cnn_batchnorm_inplace_relu": (SmallCNN, lambda: (torch.randn(4, 3, 12, 12),)),
    "transformer_encoder": (transformer, lambda: (torch.randn(3, 10, 32),)),
    "dict_output": (DictModel, lambda: (torch.randn(5, 6),)),
    "module_called_twice": (TwiceModel, lambda: (torch.randn(5, 4),)),
}


def _run(name: str, **trace_kwargs: Any) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    factory, make_inputs = CASES[name]
    torch.manual_seed(0)
    model = factory()
    inputs = make_inputs()
    calls = 0
    if trace_kwargs:
        with tracer.trace(model, **trace_kwargs) as t:
            outputs = _forward_backward(model, inputs)
            t.step()
        calls = len(t.calls)
    else:
        outputs = _forward_backward(model, inputs)
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return outputs, grads, calls


def _forward_backward(model: nn.Module, inputs: tuple[Any, ...]) -> list[torch.Tensor]:
    result = model(*inputs)
    tensors = [v for _, v in walk_output(result) if isinstance(v, torch.Tensor)]
    loss = sum(t.float().square().sum() for t in tensors if t.requires_grad)
    loss.backward()  # type: ignore[union-attr]
    return [t.detach().clone() for t in tensors]


@pytest.mark.parametrize("name", sorted(CASES))
def test_trace_outputs_and_gradients_bit_identical(name: str) -> None:
    plain_out, plain_grads, _ = _run(name)
    traced_out, traced_grads, calls = _run(name, stats=True, ops=True, grads=True)
    assert calls > 1
    assert len(plain_out) == len(traced_out) and len(plain_grads) == len(traced_grads) > 0
    for a, b in zip(plain_out, traced_out, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(plain_grads, traced_grads, strict=True):
        assert torch.equal(a, b)


def test_trace_notes_transformer_fast_path_switched_off() -> None:
    model = transformer()
    with tracer.trace(model) as t:
        pass
    assert any("fast path" in note and "layers.0" in note for note in t.notes)
    with tracer.trace(model, exclude=["layers*"]) as t2:
        pass
    assert not any("fast path" in note for note in t2.notes)
