"""Steps and metrics: a traced step's metrics go with its records; paused blocks are not traced."""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence

import pytest
import torch
from torch import nn

import tracer
from tracer.records import CallRecord, ModuleRecord
from tracer.sink import MemorySink


class CallLog:
    """A sink that remembers each call it receives, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, dict[str, float]]] = []

    def begin(self, modules: Sequence[ModuleRecord], notes: Sequence[str]) -> None:
        pass

    def write_step(
        self, step: int, calls: Sequence[CallRecord], metrics: Mapping[str, float] | None = None
    ) -> None:
        self.events.append(("step", step, len(calls), dict(metrics or {})))

    def write_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.events.append(("metrics", step, 0, dict(metrics)))

    def end(self, status: str, error: str | None = None) -> None:
        self.events.append((status, -1, 0, {}))


def test_session_metrics_of_a_traced_step_travel_with_its_records() -> None:
    model, sink = nn.Linear(3, 2), CallLog()
    with tracer.trace(model, sink=sink, every=2) as t:
        for i in range(4):
            model(torch.randn(4, 3))
            t.log(loss=float(i))
            t.step()
        t.log(loss=9.0)  # logged in traced step 4, which is never closed: written on exit
    assert sink.events == [
        ("step", 0, 1, {"loss": 0.0}),
        ("metrics", 1, 0, {"loss": 1.0}),
        ("step", 2, 1, {"loss": 2.0}),
        ("metrics", 3, 0, {"loss": 3.0}),
        ("step", 4, 0, {"loss": 9.0}),
        ("completed", -1, 0, {}),
    ]


def test_session_paused_block_is_not_recorded_and_tracing_resumes() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with tracer.trace(model) as t:
        model(torch.randn(2, 3))
        with t.paused(), torch.no_grad():
            model(torch.randn(5, 3))  # an evaluation pass
        model(torch.randn(7, 3))
        t.step()
    batches = [c.inputs[0].shape[0] for c in t.flow(0) if c.module == ""]
    assert batches == [2, 7]


class _GcWatchingSink(MemorySink):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.seen: list[bool] = []
        self.fail = fail

    def write_step(self, step, calls, metrics=None):  # type: ignore[no-untyped-def]
        self.seen.append(gc.isenabled())
        if self.fail:
            raise OSError("disk full")
        super().write_step(step, calls, metrics)


def test_write_step_runs_with_the_garbage_collector_paused_and_restores_it() -> None:
    model = nn.Linear(3, 3)
    sink = _GcWatchingSink()
    with tracer.trace(model, sink=sink) as t:
        model(torch.ones(1, 3))
        t.step()
        assert gc.isenabled()
        gc.disable()  # a user who runs with the collector off keeps it off
        try:
            model(torch.ones(1, 3))
            t.step()
            assert not gc.isenabled()
        finally:
            gc.enable()
    assert sink.seen == [False, False] and gc.isenabled()
    failing = _GcWatchingSink(fail=True)
    with pytest.raises(OSError, match="disk full"), tracer.trace(model, sink=failing) as t:
        model(torch.ones(1, 3))
        t.step()
    assert failing.seen == [False] and gc.isenabled()
