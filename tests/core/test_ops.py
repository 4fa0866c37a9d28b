"""The op layer: functional shape changes recorded as kind="op", attributed to their module."""

from __future__ import annotations

import pytest
import torch
from core.models import ArticleLSTM
from torch import nn

import tracer
from tracer.core import wrapping as hooks
from tracer.core.stats import tensor_stats


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


class Rearranging(nn.Module):
    """Ops that keep their input's values (a permutation, a copying reshape, a view), then a
    view to another dtype and a slice, which do not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(1, 0)  # gaps in memory: read where it lies
        z = y.reshape(-1)  # a copy, in another order
        w = z.unsqueeze(0).flatten()
        bits = w.view(torch.int32)  # the same bytes read as other values
        return bits[3:]


@pytest.mark.usefixtures("probe_path")
def test_a_rearranging_op_shares_its_input_statistics() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 5)
    x[2, 3] = float("nan")
    model = Rearranging()
    with torch.no_grad(), tracer.trace(model, ops=True) as t:
        model(x)
    ops = {c.op: c for c in t.flow(0) if c.kind == "op"}
    assert list(ops) == ["permute", "reshape", "unsqueeze", "flatten", "view", "getitem"]
    want = tensor_stats(x)  # the values, in any order
    for name in ("permute", "reshape", "unsqueeze", "flatten"):
        call = ops[name]
        assert call.inputs[0].stats == call.outputs[0].stats, name
        for key in ("numel", "nan_count", "min", "max", "zero_frac", "near_zero_frac"):
            assert call.outputs[0].stats[key] == want[key], (name, key)
        assert call.outputs[0].stats["mean"] == pytest.approx(want["mean"], rel=1e-6)
    # A view to another dtype holds other values: its own statistics, of the int32 bits
    bits = ops["view"].outputs[0]
    assert bits.dtype == "int32"
    assert bits.stats["max"] == x.contiguous().view(torch.int32).max().item()
    assert ops["getitem"].outputs[0].stats["numel"] == 27


@pytest.mark.usefixtures("probe_path")
def test_a_rearranging_op_result_modified_in_place_is_read_again() -> None:
    class Changed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.view(-1)
            y.add_(100.0)  # after the op, before the module reads it
            return self.scale(y)

    x = torch.zeros(4, 3)
    model = Changed()
    with torch.no_grad(), tracer.trace(model, ops=True) as t:
        model(x)
    view = next(c for c in t.flow(0) if c.op == "view")
    scale = next(c for c in t.flow(0) if c.module == "scale")
    assert view.outputs[0].stats["mean"] == 0.0  # as the op left it
    assert scale.inputs[0].stats["mean"] == 100.0  # as the module found it


@pytest.mark.usefixtures("probe_path")
def test_extra_statistics_of_a_rearranged_result_are_its_own() -> None:
    # An extra statistic may depend on the order of the values: with one registered, the result
    # of a permutation is read as itself.
    def second(t: torch.Tensor) -> float:
        return float(t.flatten()[1])

    class Transposed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.transpose(0, 1)

    x = torch.arange(6.0).view(2, 3)
    model = Transposed()
    with torch.no_grad(), tracer.trace(model, ops=True, extra_stats={"second": second}) as t:
        model(x)
    op = next(c for c in t.flow(0) if c.op == "transpose")
    assert op.inputs[0].stats["second"] == 1.0
    assert op.outputs[0].stats["second"] == 3.0  # [[0, 3], [1, 4], [2, 5]]
    assert op.outputs[0].stats["mean"] == 2.5


@pytest.mark.usefixtures("probe_path")
def test_an_op_reading_the_previous_output_has_its_record() -> None:
    # The op's input is the output the Linear just produced: the same shape, dtype and
    # statistics, taken over instead of read again.
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x).view(-1)[1:]

    torch.manual_seed(0)
    model = Head()
    x = torch.randn(3, 4)
    with torch.no_grad(), tracer.trace(model, ops=True) as t:
        out = model(x)
    with torch.inference_mode(), tracer.trace(model, ops=True) as later:
        model(x)  # inference tensors have no version counter: each is read
    assert [c.name for c in later.flow(0)] == ["<root>", "lin", "view", "getitem"]
    assert later.flow(0)[3].outputs[0].stats == t.flow(0)[3].outputs[0].stats
    assert later.internal_errors == 0
    lin, view, item = (c for c in t.flow(0) if c.module == "lin" or c.kind == "op")
    (seen,), (made,) = view.inputs, lin.outputs
    assert (seen.shape, seen.dtype, seen.stats) == (made.shape, made.dtype, made.stats)
    assert view.inputs[0].stats != lin.inputs[0].stats
    assert item.inputs[0].stats == view.outputs[0].stats == lin.outputs[0].stats
    assert item.outputs[0].stats["mean"] == pytest.approx(float(out.mean()), rel=1e-6)
