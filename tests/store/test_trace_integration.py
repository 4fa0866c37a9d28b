"""A user's own training loop recording into a store through ``tracer.trace(store=...)``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import tracer
from tracer.store import open_store


def model() -> nn.Module:
    """A tiny classifier."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def train(net: nn.Module, t: tracer.Trace, steps: int, fail_at: int | None = None) -> None:
    """A plain loop: forward, backward, optimiser step, t.log(), t.step()."""
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for i in range(steps):
        if i == fail_at:
            raise RuntimeError("diverged")
        loss = net(torch.randn(5, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t.log(loss=loss.item())
        t.step()


def test_trace_with_store_path_records_a_completed_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    net = model()
    with tracer.trace(net, store=path, name="my-run", config={"lr": 0.1, "batch": 5}) as t:
        train(net, t, steps=3)
    with open_store(path) as store:
        (run,) = store.list_runs()
        assert (run.name, run.status, dict(run.config)) == (
            "my-run",
            "completed",
            {"lr": 0.1, "batch": 5},
        )
        assert run.torch_version == torch.__version__ and run.device == "cpu"
        assert store.steps(run.id) == [0, 1, 2] and run.steps == 3
        flow = store.flow(run.id, 1)
        assert [c.module for c in flow] == ["", "0", "1", "2"]
        assert flow[1].outputs[0].shape == (5, 8)
        assert [m.path for m in store.module_tree(run.id)] == ["", "0", "1", "2"]
        assert len(store.series(run.id, "2", stat="mean")) == 3
        assert [m.step for m in store.metrics(run.id)] == [0, 1, 2]


def test_trace_with_store_marks_failed_run_and_keeps_steps(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    net = model()
    with (
        pytest.raises(RuntimeError, match="diverged"),
        tracer.trace(net, store=str(path), name="bad") as t,
    ):
        train(net, t, steps=5, fail_at=2)
    with open_store(path) as store:
        run = store.get_run("bad")
        assert run.status == "failed" and "diverged" in (run.error or "")
        assert store.steps(run.id) == [0, 1]


def test_trace_with_store_object_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_DB", str(tmp_path / "env.db"))
    net = model()
    with tracer.trace(net, store=True, name="from-env") as t:
        train(net, t, steps=1)
    with open_store(tmp_path / "env.db") as store:
        with tracer.trace(net, store=store, name="from-object") as t:
            train(net, t, steps=1)
        assert [(r.name, r.status) for r in store.list_runs()] == [
            ("from-object", "completed"), ("from-env", "completed"),
        ]  # fmt: skip
