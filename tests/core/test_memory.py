"""No tensor outlives its hook: memory stays flat over a long traced run."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Mapping, Sequence

import pytest
import torch
from torch import nn

import tracer
from tracer.records import CallRecord, ModuleRecord


class CountingSink:
    """Counts records and drops them, so only the tracer's own memory is measured."""

    def __init__(self) -> None:
        self.calls = 0

    def begin(self, modules: Sequence[ModuleRecord], notes: Sequence[str]) -> None:
        pass

    def write_step(
        self, step: int, calls: Sequence[CallRecord], metrics: Mapping[str, float] | None = None
    ) -> None:
        self.calls += len(calls)

    def write_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def end(self, status: str, error: str | None = None) -> None:
        pass


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def _train(model: nn.Module, t: tracer.Trace, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(steps):
        loss = model(torch.randn(4, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t.log(loss=loss.item())
        t.step()


@pytest.mark.slow
def test_memory_flat_over_1000_traced_steps() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    sink = CountingSink()
    with tracer.trace(model, sink=sink, ops=True, grads=True) as t:
        _train(model, t, 100)  # warm up: buffers, caches, optimizer state
        tensors_before = _live_tensors()
        tracemalloc.start()
        _train(model, t, 200)  # the interpreter's own caches settle under tracemalloc too
        gc.collect()
        start, _ = tracemalloc.get_traced_memory()
        _train(model, t, 700)
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        tensors_after = _live_tensors()
    assert sink.calls == 1000 * 4
    assert tensors_after <= tensors_before
    assert end - start < 32 * 1024, f"grew by {end - start} bytes over 700 steps"
