"""A traced module's forward is wrapped on the instance: what that means for users' code."""

from __future__ import annotations

import copy
import inspect
import io
from typing import Any

import pytest
import torch
from core.models import mlp, transformer
from torch import nn

import tracer
from tracer.core import wrapping
from tracer.core.collector import StatsCollector
from tracer.core.stats import CHUNK_NUMEL, tensor_stats
from tracer.core.step_state import Recorder
from tracer.sink import MemorySink


class Keyworded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, scale: float = 1.0, *, mask: Any = None) -> torch.Tensor:
        return self.fc(x) * scale


def test_wrapping_keeps_the_forward_signature_for_introspection() -> None:
    model = Keyworded()
    before = inspect.signature(model.forward)
    with tracer.trace(model):
        assert "forward" in model.__dict__  # wrapped on the instance while traced
        assert inspect.signature(model.forward) == before
        assert inspect.signature(model.fc.forward) == inspect.signature(nn.Linear(1, 1).forward)
    assert "forward" not in model.__dict__ and "forward" not in model.fc.__dict__


def test_deepcopy_of_a_traced_model_runs_untraced_on_its_own_weights() -> None:
    torch.manual_seed(0)
    model = mlp(2)
    x = torch.randn(3, 64)
    with tracer.trace(model) as t:
        model(x)
        ema = copy.deepcopy(model)  # e.g. an EMA copy made inside the training loop
        with torch.no_grad():
            for p in ema.parameters():
                p.mul_(0)
        recorded = len(t._rec.calls)
        wrapper = ema[0].__dict__["forward"]
        assert wrapper.rec is None  # a pass-through: nothing of the trace was copied
        out = ema(x)
        assert len(t._rec.calls) == recorded  # the copy's calls are not the traced model's
        t.step()
    assert torch.equal(out, ema(x)) and not torch.equal(out, model(x))
    assert float(out.abs().sum()) == 0.0  # the copy used its own (zeroed) weights
    with tracer.trace(ema) as t2:  # and can be traced itself
        ema(x)
    assert [c.module for c in t2.flow(0)] == ["", "0", "1", "2", "3"]


def test_pickled_traced_model_loads_and_runs_untraced() -> None:
    torch.manual_seed(0)
    model = mlp(2)
    x = torch.randn(3, 64)
    buffer = io.BytesIO()
    with tracer.trace(model) as t:
        want = model(x)
        torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded(x), want)
    assert len(t.calls) == 5  # one traced forward; loading and running the copy added none


def test_a_forward_the_user_already_wrapped_is_kept_and_restored() -> None:
    model = mlp(1)
    seen: list[str] = []
    original = model[0].forward

    def user_forward(x: torch.Tensor) -> torch.Tensor:  # as accelerate-style libraries do
        seen.append("user")
        return original(x)

    model[0].forward = user_forward
    with tracer.trace(model) as t:
        model(torch.randn(2, 64))
    assert seen == ["user"]
    assert model[0].__dict__["forward"] is user_forward
    assert [c.module for c in t.calls] == ["", "0", "1"]


def _replicate(module: nn.Module) -> nn.Module:
    """What nn.DataParallel's replicate() does per module (it needs GPUs to run as a whole)."""
    replica = module._replicate_for_data_parallel()
    for name, param in module.named_parameters(recurse=False):
        setattr(replica, name, param)  # replicate() sets each device's parameter copies
    return replica


def test_data_parallel_replicas_run_their_own_forward_untraced() -> None:
    torch.manual_seed(0)
    model = mlp(1)
    x = torch.randn(2, 64)
    original = model[1].forward

    def user_forward(y: torch.Tensor) -> torch.Tensor:
        return original(y) * 2

    model[1].forward = user_forward  # a forward set on the instance before tracing
    with tracer.trace(model) as t:
        want = model(x)
        recorded = len(t._rec.calls)
        linear, relu = _replicate(model[0]), _replicate(model[1])
        for replica in (linear, relu):
            assert "_replicate_for_data_parallel" not in replica.__dict__
        assert "forward" not in linear.__dict__  # the class's forward, bound to the replica
        assert relu.__dict__["forward"] is user_forward  # the instance's own, restored
        assert torch.equal(relu(linear(x)), want)
        assert len(t._rec.calls) == recorded  # the replicas recorded nothing
        copied = copy.deepcopy(model)  # a copy's replicas come from the copy
        assert _replicate(copied[0]).weight is copied[0].weight
    assert "_replicate_for_data_parallel" not in model[0].__dict__  # removed on close
    assert [c.module for c in t.flow(0)] == ["", "0", "1"]


def test_a_wrapper_kept_after_the_trace_closes_passes_through() -> None:
    model = mlp(1)
    with tracer.trace(model) as t:
        kept = model[0].forward
    out = kept(torch.randn(2, 64))
    assert out.shape == (2, 64) and t.calls == []
    assert t._rec.calls == []  # nothing recorded, not even into the closed trace's recorder


def test_records_see_pre_hook_inputs_and_the_forward_own_output() -> None:
    layer = nn.Linear(4, 4)
    layer.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    layer.register_forward_hook(lambda m, args, out: out.sum(0))
    with tracer.trace(layer) as t:
        out = layer(torch.ones(3, 4))
    (call,) = t.calls
    assert call.inputs[0].stats["max"] == 0.0  # the pre-hook's input is what forward ran on
    assert call.outputs[0].shape == (3, 4)  # forward's result, before the user's forward hook
    assert out.shape == (4,)


class Chain(nn.Module):
    """An output changed between two layers: in place, then its requires_grad flag."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Identity(), nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        y.mul_(2)
        z = self.b(y)
        z.requires_grad_()
        return self.c(z)


def test_a_tensor_changed_between_two_layers_is_described_as_it_is_then() -> None:
    with torch.no_grad():
        x = torch.ones(2, 3)
        with tracer.trace(Chain()) as t:
            t.model(x)
    calls = {c.module: c for c in t.calls}
    assert calls["a"].outputs[0].stats["mean"] == 1.0
    assert calls["b"].inputs[0].stats["mean"] == 2.0  # after the in-place doubling
    assert calls["b"].outputs[0].requires_grad is False
    assert calls["c"].inputs[0].requires_grad is True


def test_transformer_encoder_layers_still_record_their_sublayers() -> None:
    torch.manual_seed(0)
    model = transformer().eval()
    with torch.no_grad(), tracer.trace(model) as t:
        model(torch.randn(2, 5, 32))
    modules = {c.module for c in t.calls}
    assert {"layers.0.self_attn", "layers.0.linear1", "layers.1.norm2"} <= modules
    assert any("fast path" in note for note in t.sink.notes)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("torch_stats_path")
def test_statistics_stay_right_across_many_reduced_chunks() -> None:
    """More rows of one size than a chunk holds, NaN/Inf and constant rows among them (the
    row buffers serve installs without the compiled kernel)."""
    torch.manual_seed(3)
    size = 1000
    tensors = []
    for i in range(3 * (CHUNK_NUMEL // size) + 5):
        x = torch.randn(size) * (i % 5 + 1)
        if i % 7 == 0:
            x[i % size] = float("nan")
        if i % 11 == 0:
            x[:] = 5.0  # needs the careful standard deviation
        if i % 13 == 0:
            x[0] = float("inf")
        tensors.append(x)
    collector = StatsCollector()
    indices = [collector.request(x) for x in tensors]
    stats = collector.flush()
    assert len(collector._rows) == 1
    (rows,) = collector._rows.values()
    assert rows.chunk.numel() <= CHUNK_NUMEL  # memory does not grow with the calls of a step
    for x, index in zip(tensors, indices, strict=True):
        got, want = stats.get(index), tensor_stats(x)
        assert set(got) == set(want)
        for key, value in want.items():
            if value != value:  # NaN (e.g. the mean of no finite value)
                assert got[key] != got[key], key
            else:
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key


def test_records_are_built_when_read_and_equal_each_time() -> None:
    model = mlp(2)
    sink = MemorySink()
    with tracer.trace(model, sink=sink) as t:
        for _ in range(3):
            model(torch.randn(2, 64))
            t.step()
        assert len(sink._steps) == 3  # handed over, not yet built
        first = sink.calls
        assert sink._steps == [] and len(first) == 15
        assert sink.calls is first
    assert [c.step for c in t.calls] == [0] * 5 + [1] * 5 + [2] * 5
    assert all(c.outputs[0].stats["numel"] == 128 for c in t.calls)


def test_a_multi_device_data_parallel_model_says_its_replicas_are_untraced() -> None:
    model = nn.DataParallel(mlp(1))  # without GPUs it keeps device_ids empty and just calls
    with tracer.trace(model) as t:
        model(torch.randn(2, 64))
    assert not any("DataParallel" in note for note in t.notes)
    assert [c.module for c in t.flow(0)] == ["", "module", "module.0", "module.1"]
    model.device_ids = [0, 1]  # as on a machine with two GPUs
    with tracer.trace(model) as t:
        pass
    assert any("DataParallel (<root>) runs each device's replica" in note for note in t.notes)


@pytest.mark.parametrize("grads", [False, True])
def test_the_compiled_wrappers_are_made_as_the_python_loop_makes_them(
    grads: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if wrapping._make_wraps is None:
        pytest.skip("the wrappers are made in Python here (no compiled probe)")
    model = nn.Sequential(transformer(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    named = list(model.named_modules())

    def hooks() -> wrapping.HookSet:
        rec = Recorder(stats=True, collector=StatsCollector())
        return wrapping.HookSet(model, rec, grads=grads, include=None, exclude=None, named=named)

    compiled = hooks()
    monkeypatch.setattr(wrapping, "_make_wraps", None)
    python = hooks()
    assert compiled.paths == python.paths == [path for path, _ in named]
    assert (
        len(compiled._params)
        == len(python._params)
        == (len(list(model.parameters())) if grads else 0)
    )
    fields = ("info", "grads", "inner", "live", "saved", "ops", "op_free")
    for (module, wrap, replicate), (other, twin, _) in zip(
        compiled._modules, python._modules, strict=True
    ):
        assert module is other and type(wrap) is type(twin) is wrapping.Wrap
        assert [getattr(wrap, f) for f in fields] == [getattr(twin, f) for f in fields]
        assert wrap.module() is module and replicate.__self__ is wrap
        assert replicate.__func__ is wrapping.Wrap._replicate
    compiled.attach()  # and it traces as the Python one does
    try:
        assert model[1][0].forward is compiled._modules[-2][1]
    finally:
        compiled.detach()
    assert "forward" not in vars(model[1][0])
