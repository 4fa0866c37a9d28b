"""What a trace makes only when it is needed: the op layer's forward of each module (on its
first call that records ops, after every attach), the claim on the model's modules, the notes
from the walk the trace already made, the run fields checked only when given."""

from __future__ import annotations

import copy
import gc
import io
import json
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from core.models import mlp, transformer
from torch import nn

import tracer
from tracer.core import trace as trace_module
from tracer.core.notes import collect_notes
from tracer.core.trace import TraceError


class Fold(nn.Module):
    """A module whose forward runs recorded ops (not one of the op-free torch classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.view(-1, 8)).unsqueeze(1)


def _ops(t: tracer.Trace, step: int) -> list[tuple[str, str | None]]:
    return [(c.module, c.op) for c in t.flow(step) if c.kind == "op"]


def _wraps(t: tracer.Trace) -> dict[str, Any]:
    """Each traced module's wrapper state, by path."""
    return {wrap.info[0]: wrap for _, wrap, _ in t._hooks._modules}


def test_op_layer_forwards_are_made_by_the_first_call_after_each_attach() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Fold(), Fold())
    x = torch.randn(2, 1, 8)
    with tracer.trace(model, ops=True, every=2) as t:
        assert all(w.ops is None for w in _wraps(t).values())  # nothing made by attaching
        model(x)
        made = {path: w.ops for path, w in _wraps(t).items()}
        assert made["0"] is not None and made["0.fc"] is None  # Linear runs no recorded op
        t.step()  # step 1 is not traced: detached
        model(x)
        t.step()  # step 2: attached again, the op layer's forwards made anew on demand
        assert all(w.ops is None for w in _wraps(t).values())
        model(x)
        assert _wraps(t)["0"].ops is not made["0"]
        assert _wraps(t)["0"].ops.inner.args[1] == model[0].forward.__wrapped__
        t.step()
        model(x)  # untraced
    want = [("0", "view"), ("0", "unsqueeze"), ("1", "view"), ("1", "unsqueeze")]
    assert _ops(t, 0) == want and _ops(t, 2) == want
    assert [c.module for c in t.flow(2)] == [c.module for c in t.flow(0)]
    assert {c.step for c in t.calls} == {0, 2}
    assert t.internal_errors == 0


def test_op_layer_forwards_are_kept_from_step_to_step_while_attached() -> None:
    model = nn.Sequential(Fold())
    x = torch.randn(2, 1, 8)
    with tracer.trace(model, ops=True) as t:
        model(x)
        made = _wraps(t)["0"].ops
        t.step()
        model(x)
        assert _wraps(t)["0"].ops is made
    assert _ops(t, 0) == _ops(t, 1) == [("0", "view"), ("0", "unsqueeze")]


def test_op_layer_records_again_after_paused() -> None:
    model = nn.Sequential(Fold())
    x = torch.randn(2, 1, 8)
    with tracer.trace(model, ops=True) as t:
        model(x)
        with t.paused():
            assert "forward" not in model[0].__dict__
            model(x)  # not recorded
        model(x)
    assert _ops(t, 0) == [("0", "view"), ("0", "unsqueeze")] * 2
    assert [c.call_index for c in t.flow(0) if c.module == "0" and c.kind == "module"] == [0, 1]


def test_a_forward_replaced_between_steps_is_the_one_traced_with_its_ops() -> None:
    model = nn.Sequential(Fold())
    x = torch.randn(2, 1, 8)
    seen: list[str] = []
    with tracer.trace(model, ops=True, every=2) as t:
        model(x)
        fold = model[0]
        original = type(fold).forward.__get__(fold)

        def replaced(y: torch.Tensor) -> torch.Tensor:  # set on the instance by the user
            seen.append("replaced")
            return original(y.flatten(1))

        fold.forward = replaced
        t.step()  # step 1 untraced: the user's forward stays
        assert fold.__dict__["forward"] is replaced
        t.step()  # step 2: the user's forward is wrapped in its turn
        assert fold.__dict__["forward"] is not replaced
        model(x)
    assert fold.__dict__["forward"] is replaced  # restored on close
    assert seen == ["replaced"]
    assert _ops(t, 0) == [("0", "view"), ("0", "unsqueeze")]
    assert _ops(t, 2) == [("0", "flatten"), ("0", "view"), ("0", "unsqueeze")]


def test_deepcopy_after_the_op_layer_forward_was_made_runs_untraced_on_the_copy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Fold())
    x = torch.randn(2, 1, 8)
    with tracer.trace(model, ops=True) as t:
        model(x)
        assert _wraps(t)["0"].ops is not None
        twin = copy.deepcopy(model)
        with torch.no_grad():
            twin[0].fc.weight.zero_()
            twin[0].fc.bias.zero_()
        recorded = len(t._rec.calls)
        with torch.no_grad():
            out = twin(x)
        assert len(t._rec.calls) == recorded  # the copy records nothing
        wrapper = twin[0].__dict__["forward"]
        assert wrapper.rec is None and wrapper.ops is None
    assert float(out.abs().sum()) == 0.0  # the copy's own (zeroed) weights
    assert not torch.equal(model(x), out)


def test_the_claim_is_released_on_close_and_on_a_failed_open() -> None:
    model = mlp(1)
    with tracer.trace(model):
        with pytest.raises(TraceError, match="the model is already traced"):
            tracer.trace(model[0]).open()
        with pytest.raises(TraceError, match="its submodule '0'"):
            tracer.trace(nn.Sequential(model)).open()
    assert not any(id(m) in trace_module._TRACED for m in model.modules())

    class BadSink(tracer.sink.MemorySink):
        def begin(self, *args: Any) -> None:
            raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"), tracer.trace(model, sink=BadSink()):
        pass
    with tracer.trace(model) as t:  # nothing was left claimed
        model(torch.randn(2, 64))
    assert len(t.calls) == 3


def test_a_traced_model_dropped_without_closing_blocks_nothing() -> None:
    model = mlp(1)
    t = tracer.trace(model)
    t.open()
    gone = weakref.ref(model)
    del model, t
    gc.collect()
    assert gone() is None
    fresh = mlp(1)
    # Whatever id the new model's modules get, a dead entry never counts as traced.
    for module in fresh.modules():
        trace_module._TRACED[id(module)] = weakref.ref(nn.ReLU())  # dead at once
    with tracer.trace(fresh) as t2:
        fresh(torch.randn(2, 64))
    assert len(t2.calls) == 3


def test_dead_claims_are_swept_when_the_registry_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_module, "_SWEEP_AT", [5])
    for _ in range(10):
        t = tracer.trace(mlp(1))
        t.open()  # never closed; the model goes with the trace
        del t
    gc.collect()
    model = mlp(1)
    with tracer.trace(model):
        alive = [ref for ref in trace_module._TRACED.values() if ref() is not None]
        assert len(trace_module._TRACED) < 10 * 4
        assert {ref() for ref in alive} >= set(model.modules())


def test_notes_from_the_traces_walk_are_the_notes_of_a_fresh_walk() -> None:
    model = nn.Sequential(transformer(), nn.DataParallel(nn.Linear(32, 32)))
    with tracer.trace(model, ops=True, exclude="0.layers.1*") as t:
        pass
    fresh = collect_notes(model, t._hooks.paths, ops=True)
    assert t.notes == fresh
    assert any("'0.layers.0'" in note for note in t.notes)
    assert not any("'0.layers.1'" in note for note in t.notes)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": 3}, "name must be a string, got 3"),
        ({"config": [1]}, "config must be a mapping, got list"),
        ({"tags": {"a": 1}}, "tags must map strings to strings"),
        ({"seed": True}, "seed must be an integer, got True"),
        ({"pipeline": 2.0}, "pipeline must be a string, got 2.0"),
    ],
)
def test_run_fields_are_checked_without_a_store(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(TypeError) as caught:
        tracer.trace(mlp(1), **kwargs)
    assert words in str(caught.value)


def test_run_fields_without_a_store_are_accepted_and_change_nothing() -> None:
    model = mlp(1)
    x = torch.randn(2, 64)
    with tracer.trace(model, name="run", seed=3, tags={"a": "b"}, config={"lr": 1}) as t:
        model(x)
    with tracer.trace(model) as plain:
        model(x)
    assert [c.module for c in t.calls] == [c.module for c in plain.calls]


class Hiding(nn.Module):
    """A class whose named_modules leaves out its second child."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = nn.Linear(2, 2)
        self.hidden = nn.Linear(2, 2)

    def named_modules(
        self, memo: Any = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Any:
        for path, module in super().named_modules(memo, prefix, remove_duplicate):
            if not path.endswith("hidden"):
                yield path, module


def _walk_models() -> list[nn.Module]:
    shared = nn.Linear(3, 3)
    with_none = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with_none.register_module("gap", None)
    with_none.add_module("after", nn.Sequential(shared, nn.Sequential(shared, nn.Tanh())))
    cycle = nn.Sequential(nn.Linear(1, 1))
    cycle[0].add_module("back", cycle)
    deep: nn.Module = nn.ReLU()
    for depth in range(40):  # deeper than the compiled walk's first stack
        deep = nn.Sequential(nn.Identity(), deep) if depth % 2 else nn.Sequential(deep)
    return [
        deep,
        nn.Identity(),
        mlp(3),
        transformer(),
        with_none,
        nn.Sequential(nn.ReLU(), Hiding(), nn.ReLU()),
        Hiding(),
        cycle,
        nn.ModuleDict({"b": nn.ReLU(), "a": nn.ModuleList([nn.ReLU(), nn.GELU()])}),
    ]


@pytest.mark.parametrize("walk", ["compiled", "python"])
@pytest.mark.parametrize("model", _walk_models(), ids=lambda m: type(m).__name__)
def test_the_traces_walk_is_named_modules(
    model: nn.Module, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if walk == "python":
        monkeypatch.setattr(trace_module, "_walk", None)
    elif trace_module._walk is None:
        pytest.skip("the kernel module is not built: the walk is Python's")
    walked = trace_module.named_modules(model)
    want = list(model.named_modules())
    assert [path for path, _ in walked] == [path for path, _ in want]
    assert all(a is b for (_, a), (_, b) in zip(walked, want, strict=True))
    with tracer.trace(model) as t:
        pass
    assert [m.path for m in t.modules] == [path for path, _ in model.named_modules()]


def test_replicas_of_a_loaded_copy_of_a_traced_model_run_its_own_forward() -> None:
    torch.manual_seed(0)
    model = mlp(1)
    x = torch.randn(2, 64)
    buffer = io.BytesIO()
    with tracer.trace(model) as t:
        want = model(x)
        torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    replica = loaded[0]._replicate_for_data_parallel()  # as nn.DataParallel's replicate() does
    assert (
        "forward" not in replica.__dict__ and "_replicate_for_data_parallel" not in replica.__dict__
    )
    replica.weight, replica.bias = loaded[0].weight, loaded[0].bias
    assert torch.equal(replica(x), loaded[0](x))
    assert torch.equal(loaded(x), want) and len(t.calls) == 3
    again = loaded[0].__dict__["_replicate_for_data_parallel"]()
    assert "forward" not in again.__dict__  # each replica made the same way


def test_a_model_left_traced_by_a_dropped_open_trace_stays_claimed() -> None:
    model = mlp(1)
    t = tracer.trace(model)
    t.open()
    del t  # dropped without closing: its wrappers stay on the model
    gc.collect()
    with pytest.raises(TraceError, match="already traced"):
        tracer.trace(model).open()


@pytest.mark.slow
def test_oneshot_benchmark_prints_its_figures() -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "oneshot.py"
    done = subprocess.run(
        [sys.executable, str(script), "--number", "20", "--reps", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert list(rows) == ["identity", "seq", "linear200"]
    for row in rows.values():
        for label in ("untraced", "construct", "open+close", "trace ops+stats", "part: close"):
            assert row[label] > 0
        assert row["open+close"] > row["construct"]
    assert rows["linear200"]["per module"] == rows["linear200"]["open+close"] / 201
