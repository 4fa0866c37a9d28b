"""The traced forward's compiled call (tracer.core._probe.WrapCore) is taken where it is built,
records exactly what the Python path records, and holds on to nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from core.models import TwiceModel, mlp
from core.test_memory import CountingSink
from torch import nn

import tracer
import tracer.core.probe
import tracer.core.step_state
import tracer.core.wrapping
from tracer.records import CallRecord

_ROOT = Path(__file__).resolve().parents[2]


class Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("no")


class Catches(nn.Module):
    """A parent whose child raises (its call stays open until the parent closes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = Raises()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with contextlib.suppress(ValueError):
            self.bad(x)
        return self.fc(x)


class Pair(nn.Module):
    """A non-tensor output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        return self.fc(x), 3


class Unpair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.pair(x)
        return self.act(y)


class InPlace(nn.Module):
    """The previous call's output changed in place before the next call takes it in."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        with torch.no_grad():
            y.mul_(2)
        return self.b(y)


class Views(nn.Module):
    """Views of one output (whole and partial) as the next calls' inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.ReLU()
        self.c = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        z = self.b(y.view(-1, 8))
        return self.c(z[:, :4]) + self.c(y.t()[:4].t()[:, :4].contiguous())


def _models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return {
        "mlp": (mlp(3), torch.randn(3, 64)),
        "raises_caught": (Catches(), torch.randn(2, 4)),
        "non_tensor_output": (Unpair(), torch.randn(2, 4)),
        "in_place": (InPlace(), torch.randn(2, 4)),
        "views": (Views(), torch.randn(4, 8)),
        "called_twice": (TwiceModel(), torch.randn(3, 4)),
    }


def _records(model: nn.Module, x: torch.Tensor, **options: Any) -> tuple[list[CallRecord], int]:
    """Three traced steps, durations blanked, and the internal error count."""
    with tracer.trace(model, **options) as t:
        for _ in range(3):
            model.zero_grad()
            out = model(x)
            if options.get("grads"):
                out.sum().backward()
            t.step()
    return [dataclasses.replace(c, duration_s=None) for c in t.calls], t.internal_errors


def _python_calls(run: Callable[[], Any]) -> int:
    """How many times the Python traced forward ran during ``run()``."""
    code = tracer.core.wrapping._traced_forward.__code__
    seen = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if event == "call" and frame.f_code is code:
            seen += 1

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.needs_extension("probe")
def test_the_installed_forward_and_the_recorder_are_the_compiled_types() -> None:
    from tracer.core import _probe

    model = mlp(1)
    with tracer.trace(model) as t:
        forward = model[0].__dict__["forward"]
        assert isinstance(forward, _probe.WrapCore)
        assert type(forward) is tracer.core.wrapping.Wrap
        assert isinstance(t._rec, _probe.RecorderCore)
        assert forward.__wrapped__ == nn.Linear.forward.__get__(model[0])


@pytest.mark.needs_extension("probe")
@pytest.mark.parametrize("stats", [False, True])
def test_the_common_call_runs_no_python_traced_forward(
    stats: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = mlp(3), torch.randn(3, 64)
    with tracer.trace(model, stats=stats) as t:
        assert _python_calls(lambda: model(x)) == 0
        t.step()
    # With the Python probe (as without the compiled one), every call takes the Python path.
    monkeypatch.setattr(tracer.core.probe, "_CompiledProbe", None)
    with tracer.trace(model, stats=stats) as t:
        assert _python_calls(lambda: model(x)) == len(list(model.modules()))
        t.step()


@pytest.mark.needs_extension("probe")
def test_uncommon_calls_go_to_the_python_traced_forward() -> None:
    linear = nn.Linear(4, 4)
    x = torch.randn(3, 4)
    with tracer.trace(linear) as t:
        param = nn.Parameter(torch.randn(3, 4))
        assert _python_calls(lambda: linear(x)) == 0
        assert _python_calls(lambda: linear(input=x)) == 1  # a keyword
        assert _python_calls(lambda: linear(param)) == 1  # a tensor subclass
        t.step()
    assert [c.inputs[0].type_name for c in t.calls] == ["Tensor", "Tensor", "Parameter"]
    assert [c.inputs[0].slot for c in t.calls] == ["0", "input", "0"]


@pytest.mark.parametrize("stats", [False, True])
@pytest.mark.parametrize("grads", [False, True])
@pytest.mark.parametrize("name", sorted(_models()))
def test_compiled_and_python_paths_give_identical_records(
    name: str,
    stats: bool,
    grads: bool,
    monkeypatch: pytest.MonkeyPatch,
    need_extension: Callable[[str], None],
) -> None:
    need_extension("probe")
    model, x = _models()[name]
    if grads:
        x = x.requires_grad_()
    compiled = _records(model, x, stats=stats, grads=grads)
    monkeypatch.setattr(tracer.core.probe, "_CompiledProbe", None)
    python = _records(model, x, stats=stats, grads=grads)
    assert compiled == python
    assert compiled[1] == 0  # the model's own error is not the tracer's
    if name == "raises_caught":
        bad = [c for c in compiled[0] if c.module == "bad"]
        assert bad and all(c.outputs == () for c in bad)
    if grads:
        assert any(g.role == "grad" for c in compiled[0] for g in c.grads)


@pytest.mark.needs_extension("probe")
def test_an_error_in_the_forward_reaches_the_caller_unchanged() -> None:
    model = nn.Sequential(nn.Linear(4, 4), Raises())
    with tracer.trace(model) as t:
        with pytest.raises(ValueError, match="no") as info:
            model(torch.randn(2, 4))
        assert info.traceback[-1].name == "forward"  # raised where the model raised it
        assert t._rec.stack == []
        t.step()
    assert [(c.module, len(c.outputs)) for c in t.calls] == [("", 0), ("0", 1), ("1", 0)]
    assert t.internal_errors == 0


@pytest.mark.needs_extension("probe")
def test_the_compiled_clock_is_perf_counter() -> None:
    from tracer.core import _probe

    for _ in range(100):
        before = time.perf_counter()
        now = _probe.perf_counter()
        after = time.perf_counter()
        assert before <= now <= after


@pytest.mark.needs_extension("probe")
def test_the_compiled_call_keeps_no_reference_to_its_tensors() -> None:
    model = mlp(2)
    x = torch.randn(3, 64)
    with tracer.trace(model, stats=True, grads=True) as t:
        first = model(x)  # the first step's bookkeeping settles
        before = sys.getrefcount(x)
        out = model(x)
        after, held = sys.getrefcount(x), sys.getrefcount(out)
        assert after == before
        assert held == 2  # ``out`` and the argument
        assert first is not out
        t.step()


@pytest.mark.needs_extension("probe")
@pytest.mark.parametrize("stats", [False, True])
def test_memory_flat_over_many_compiled_steps(stats: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(mlp(4, 4), Catches(), Unpair())
    x = torch.randn(2, 4, requires_grad=True)

    def steps(n: int, t: tracer.Trace) -> None:
        for _ in range(n):
            model(x).sum().backward()
            t.step()

    with tracer.trace(model, sink=CountingSink(), stats=stats, grads=True) as t:
        steps(50, t)
        tracemalloc.start()
        steps(50, t)
        gc.collect()
        start, _ = tracemalloc.get_traced_memory()
        steps(300, t)
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert t.internal_errors == 0
    assert end - start < 64 * 1024, f"grew by {end - start} bytes over 300 steps"


@pytest.mark.needs_extension("probe")
def test_a_traced_model_and_its_tensors_are_freed_after_close() -> None:
    def run() -> tuple[weakref.ref[Any], ...]:
        model = nn.Sequential(mlp(2, 4), Catches())
        x = torch.randn(2, 4, requires_grad=True)
        with tracer.trace(model, stats=True, grads=True) as t:
            out = model(x)
            out.sum().backward()
            t.step()
            rec = t._rec
            info = model[0][0].__dict__["forward"].info  # the wrapper is gone with its module
        return (*[weakref.ref(o) for o in (model, x, out, rec, model[0][0].weight)], info)

    *refs, info = run()
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert sys.getrefcount(info) == 2  # the wrapper is gone (``info`` and the argument)


def mlp_grad_records() -> list[str]:
    """Two traced training steps of a small MLP, each record without its duration (the
    subprocess below runs this same function without the compiled module)."""
    torch.manual_seed(0)
    model, x = mlp(3), torch.randn(3, 64)
    with tracer.trace(model, stats=True, grads=True) as t:
        for _ in range(2):
            model(x).sum().backward()
            t.step()
    return [repr(dataclasses.replace(c, duration_s=None)) for c in t.calls]


def test_without_the_compiled_module_the_python_classes_record_the_same() -> None:
    """An install without the compiled probe: Wrap and Recorder have Python bases."""
    script = r"""
import json, sys
sys.modules["tracer.core._probe"] = None  # as if it was never built
import tracer.core.wrapping as wrapping, tracer.core.step_state as step_state
assert wrapping.Wrap.__mro__[1] is wrapping._PyWrapCore, wrapping.Wrap.__mro__
assert step_state.Recorder.__mro__[1] is object
from core.test_compiled_forward import mlp_grad_records
print(json.dumps(mlp_grad_records()))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_ROOT), str(_ROOT / "tests")]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == mlp_grad_records()
