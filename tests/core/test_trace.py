"""The Trace session: records, ordering, sampling, hygiene and sink lifecycle."""

from __future__ import annotations

import pytest
import torch
from core.models import ArticleLSTM, DictModel, TwiceModel, mlp
from torch import nn

import tracer
from tracer.core.trace import TraceError
from tracer.sink import MemorySink


def _hook_count(model: nn.Module) -> int:
    """Hooks and wrapped forwards installed on the model (a traced forward is an instance
    attribute; an untraced module has none)."""
    modules = list(model.modules())
    return (
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules)
        + sum("forward" in m.__dict__ for m in modules)
        + sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())
    )


def test_trace_records_every_module_call_in_preorder() -> None:
    model = ArticleLSTM(vocab=50, embed=6, hidden=8)
    with tracer.trace(model) as t:
        model(torch.randint(0, 50, (2, 5)))
    flow = t.flow(0)
    assert [c.module for c in flow] == ["", "embedding", "lstm", "fc", "sig"]
    assert [c.seq for c in flow] == [0, 1, 2, 3, 4]
    assert [c.depth for c in flow] == [0, 1, 1, 1, 1]
    assert flow[0].type == "ArticleLSTM" and flow[2].type == "LSTM"
    assert [o.slot for o in flow[2].outputs] == ["0", "1.0", "1.1"]
    assert flow[2].outputs[1].shape == (1, 2, 8)
    assert all(c.duration_s is not None and c.duration_s >= 0 for c in flow)
    assert flow[0].duration_s >= flow[2].duration_s


def test_trace_module_called_twice_gets_call_index_0_and_1() -> None:
    model = TwiceModel()
    with tracer.trace(model) as t:
        model(torch.randn(3, 4))
    block_calls = [c for c in t.calls if c.module == "block"]
    assert [c.call_index for c in block_calls] == [0, 1]
    assert [c.module for c in t.calls] == ["", "block", "block", "out"]


def test_trace_step_writes_each_step_and_advances_counter() -> None:
    model = DictModel()
    sink = MemorySink()
    with tracer.trace(model, sink=sink) as t:
        for _ in range(3):
            model(torch.randn(2, 6))
            t.step()
        assert t.step_index == 3
    assert sorted({c.step for c in sink.calls}) == [0, 1, 2]
    assert sink.status == "completed" and sink.error is None
    assert [m.path for m in sink.modules] == ["", "body", "head"]
    assert [o.slot for o in t.flow(1)[0].outputs] == ["logits", "hidden"]


def test_trace_every_n_records_only_sampled_steps_and_detaches_hooks() -> None:
    model = DictModel()
    with tracer.trace(model, every=3) as t:
        for step in range(7):
            model(torch.randn(2, 6))
            assert (_hook_count(model) > 0) == (step % 3 == 0)
            t.step()
    assert sorted({c.step for c in t.calls}) == [0, 3, 6]


def test_trace_include_and_exclude_globs_select_module_paths() -> None:
    model = mlp(3)
    with tracer.trace(model, include=["*"], exclude=["", "*[13579]"]) as t:
        model(torch.randn(2, 64))
    assert [c.module for c in t.calls] == ["0", "2", "4"]
    with tracer.trace(model, include="") as t2:
        model(torch.randn(2, 64))
    assert [c.module for c in t2.calls] == [""]


def test_trace_removes_every_handle_on_exit() -> None:
    model = ArticleLSTM(vocab=50, embed=6, hidden=8)
    before = _hook_count(model)
    with tracer.trace(model, grads=True, ops=True):
        assert _hook_count(model) > before
        model(torch.randint(0, 50, (2, 5)))
    assert _hook_count(model) == before


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner(x)
        raise ValueError("user bug")


def test_trace_forward_error_reaches_user_unchanged_and_hooks_removed() -> None:
    model = Boom()
    sink = MemorySink()
    with pytest.raises(ValueError, match=r"^user bug$"), tracer.trace(model, sink=sink, ops=True):
        model(torch.randn(1, 3))
    assert _hook_count(model) == 0
    assert sink.status == "failed" and sink.error == "ValueError: user bug"
    assert [c.module for c in sink.calls] == ["", "inner"]  # the partial step is kept
    assert sink.calls[0].outputs == ()
    assert not torch.overrides._is_torch_function_mode_enabled()


def test_trace_keyboard_interrupt_marks_interrupted() -> None:
    model = DictModel()
    sink = MemorySink()
    with pytest.raises(KeyboardInterrupt), tracer.trace(model, sink=sink):
        model(torch.randn(1, 6))
        raise KeyboardInterrupt
    assert sink.status == "interrupted"
    assert _hook_count(model) == 0


def test_trace_already_traced_model_raises_clear_error() -> None:
    model = DictModel()
    with tracer.trace(model):
        with pytest.raises(TraceError, match="already traced"):
            tracer.trace(model).open()
        with pytest.raises(TraceError, match="submodule '0'"), tracer.trace(nn.Sequential(model)):
            pass
    with tracer.trace(model):  # released after the first trace closed
        pass


def test_trace_user_hooks_still_fire_and_training_flag_untouched() -> None:
    model = TwiceModel()
    model.eval()
    seen: list[str] = []
    handle = model.block.register_forward_hook(lambda m, a, o: seen.append("user"))
    with tracer.trace(model, grads=True, ops=True):
        model(torch.randn(2, 4))
    handle.remove()
    assert seen == ["user", "user"]
    assert model.training is False and model.block.training is False


def test_trace_log_sends_metrics_at_current_step() -> None:
    model = DictModel()
    sink = MemorySink()
    with tracer.trace(model, sink=sink) as t:
        t.log(loss=torch.tensor(0.5))
        t.step()
        t.log({"acc": 0.75}, lr=1e-3)
        with pytest.raises(TypeError, match="metric 'bad' must be a number"):
            t.log(bad="x")
    assert sink.metrics == [(0, "loss", 0.5), (1, "acc", 0.75), (1, "lr", 1e-3)]


def test_trace_bad_arguments_give_clear_errors() -> None:
    with pytest.raises(TypeError, match=r"needs a torch\.nn\.Module"):
        tracer.trace("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every must be a positive integer"):
        tracer.trace(nn.Linear(1, 1), every=0)
    with pytest.raises(ValueError, match="either sink= or store="):
        tracer.trace(nn.Linear(1, 1), sink=MemorySink(), store="x.db")


def test_trace_step_inside_forward_is_refused() -> None:
    holder: dict[str, tracer.Trace] = {}

    class Stepper(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            holder["t"].step()
            return x

    model = Stepper()
    with tracer.trace(model) as t:
        holder["t"] = t
        with pytest.raises(TraceError, match="inside a forward"):
            model(torch.ones(1))


def test_trace_name_is_the_function_after_session_import() -> None:
    import importlib
    import types

    importlib.import_module("tracer.core.trace")
    assert isinstance(tracer.trace, types.FunctionType)
    assert tracer.trace is importlib.import_module("tracer.api").trace
    assert tracer.Trace is importlib.import_module("tracer.core.trace").Trace
    with tracer.trace(nn.Linear(2, 2)) as t:
        pass
    assert isinstance(t, tracer.Trace)


def test_trace_store_argument_of_wrong_type_is_refused_clearly() -> None:
    with pytest.raises(TypeError, match="store= takes a path, a database URL, a Store or True"):
        tracer.trace(nn.Linear(1, 1), store=123)
