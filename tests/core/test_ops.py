"""The op layer: functional shape changes recorded as kind="op", attributed to their module."""

from __future__ import annotations

import pytest
import torch
from core.models import ArticleLSTM
from torch import nn

import tracer
from tracer.core import wrapping as hooks


def _shapes(records: tuple[tracer.TensorRecord, ...]) -> list[tuple[int, ...]]:
    return [r.shape for r in records]


@pytest.mark.slow  # the full-size model: (50, 200) tokens through LSTM(30, 512)
def test_ops_article_model_flow_reads_like_the_article() -> None:
    torch.manual_seed(0)
    model = ArticleLSTM(vocab=1000, embed=30, hidden=512)
    batch = torch.randint(0, 1000, (50, 200), dtype=torch.int64)
    with torch.no_grad(), tracer.trace(model, ops=True) as t:
        model(batch)
    flow = t.flow(0)
    assert [(c.kind, c.name) for c in flow] == [
        ("module", "<root>"),
        ("module", "embedding"),
        ("module", "lstm"),
        ("op", "view"),
        ("module", "fc"),
        ("module", "sig"),
        ("op", "view"),
        ("op", "getitem"),
    ]
    _, embedding, lstm, view1, fc, sig, view2, getitem = flow
    assert _shapes(embedding.inputs) == [(50, 200)] and embedding.inputs[0].dtype == "int64"
    assert _shapes(embedding.outputs) == [(50, 200, 30)]
    assert [(r.slot, r.shape) for r in lstm.outputs] == [
        ("0", (50, 200, 512)),
        ("1.0", (1, 50, 512)),
        ("1.1", (1, 50, 512)),
    ]
    assert _shapes(view1.inputs) == [(50, 200, 512)] and _shapes(view1.outputs) == [(10000, 512)]
    assert _shapes(fc.inputs) == [(10000, 512)] and _shapes(fc.outputs) == [(10000, 1)]
    assert _shapes(sig.outputs) == [(10000, 1)]
    assert _shapes(view2.outputs) == [(50, 200)]
    assert _shapes(getitem.outputs) == [(50,)]
    assert all(c.module == "" and c.depth == 1 for c in (view1, view2, getitem))
    assert [c.call_index for c in (view1, view2, getitem)] == [0, 1, 0]
    # `.contiguous()` copied the batch-first LSTM output: same values, summed in another order
    assert view1.outputs[0].stats["mean"] == pytest.approx(lstm.outputs[0].stats["mean"], rel=1e-5)


class Inner(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).flatten()


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(x.unsqueeze(0), 2, dim=-1)
        y = self.inner(torch.cat([a, b], dim=0).squeeze(1))
        return torch.stack([y, y]).reshape(-1).permute(0)


def test_ops_attributed_to_innermost_running_module_in_order() -> None:
    model = Outer()
    with tracer.trace(model, ops=True) as t:
        model(torch.randn(3, 4))
    got = [(c.module, c.kind, c.op) for c in t.flow(0)]
    assert got == [
        ("", "module", None),
        ("", "op", "unsqueeze"),
        ("", "op", "chunk"),
        ("", "op", "cat"),
        ("", "op", "squeeze"),
        ("inner", "module", None),
        ("inner", "op", "transpose"),
        ("inner", "op", "flatten"),
        ("", "op", "stack"),
        ("", "op", "reshape"),
        ("", "op", "permute"),
    ]
    cat = t.flow(0)[3]
    assert [r.slot for r in cat.inputs] == ["0.0", "0.1"]
    chunk = t.flow(0)[2]
    assert [r.slot for r in chunk.outputs] == ["0", "1"]
    assert t.flow(0)[6].depth == 2  # an op inside "inner" sits one level below it


def test_ops_outside_forward_and_inside_statistics_not_captured() -> None:
    model = nn.Linear(4, 4)
    with tracer.trace(model, ops=True) as t:
        out = model(torch.randn(2, 4))
        out.view(-1).reshape(2, 4)[0]  # the training loop's own reshapes are not the model's
        t.step()
    assert [(c.kind, c.module) for c in t.calls] == [("module", "")]
    assert not torch.overrides._is_torch_function_mode_enabled()


def test_ops_off_by_default() -> None:
    model = ArticleLSTM(vocab=20, embed=3, hidden=4)
    with tracer.trace(model) as t:
        model(torch.randint(0, 20, (2, 3)))
    assert all(c.kind == "module" for c in t.calls)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)).view(-1, 2, 4)


def test_ops_layer_keeps_module_records_as_without_it() -> None:
    """One-tensor calls under the op layer take the fast path with torch functions switched
    off for the bookkeeping: module records must equal those of a trace without ops."""
    torch.manual_seed(0)
    model = nn.Sequential(Block(), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(5, 2, 4)
    flows = []
    for ops in (False, True):
        with tracer.trace(model, ops=ops) as t:
            model(x)
        flows.append(t.flow(0))
    plain, with_ops = flows
    modules = [c for c in with_ops if c.kind == "module"]
    assert [(c.module, c.inputs, c.outputs) for c in modules] == [
        (c.module, c.inputs, c.outputs) for c in plain
    ]
    assert [(c.module, c.op) for c in with_ops if c.kind == "op"] == [
        ("0", "flatten"),
        ("0", "view"),
        ("2", "flatten"),  # nn.Flatten's own forward
    ]
    assert t.internal_errors == 0


class Failing(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.view(-1)
        raise ValueError("boom in forward")


def test_ops_layer_error_in_a_submodule_reaches_the_user_and_leaves_no_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), Failing())
    with tracer.trace(model, ops=True) as t:
        with pytest.raises(ValueError, match="boom in forward"):
            model(torch.randn(2, 4))
        assert not torch.overrides._is_torch_function_mode_enabled()
        t.step()
        model[0](torch.randn(2, 4)).view(-1)  # the next step records as usual
    assert not torch.overrides._is_torch_function_mode_enabled()
    failed = [c for c in t.flow(0) if c.module == "1"]
    assert [(c.kind, c.op) for c in failed] == [("module", None), ("op", "view")]
    assert failed[0].outputs == ()
    assert [c.module for c in t.flow(1)] == ["0"]  # called on its own: the outermost
    assert t.internal_errors == 0


def test_ops_layer_one_tensor_calls_skip_the_generic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    generic = []
    real = hooks._traced_generic

    def counting(*args: object) -> object:
        generic.append(args[0])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hooks, "_traced_generic", counting)
    model = nn.Sequential(Block(), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with tracer.trace(model, ops=True) as t:
        model(torch.randn(5, 2, 4))
    assert len([c for c in t.flow(0) if c.kind == "module"]) == 6
    assert generic == []  # every call here takes one tensor and returns one
