"""Fixtures for the checks: small torch models trained a few steps into a real SQLite store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import tracer
from tracer.checks import CheckReport, Finding, RunRecords, check_records, check_run
from tracer.checks.builtin import BUILTIN_RULES
from tracer.store import Store, open_store

#: One training step: (model, step) -> loss. The recorder calls backward and the optimizer.
StepFn = Callable[[nn.Module, int], torch.Tensor]


@dataclass
class Recorded:
    """A run recorded by :func:`record`, opened again from its database."""

    store: Store
    run_id: int
    path: Path

    def check(self, **kwargs: object) -> CheckReport:
        """Check the run with every built-in rule; the check of the stored run (read as the rules
        ask) must find exactly what a check of all its flows read into memory finds."""
        run = self.store.get_run(self.run_id)
        report = check_run(self.store, run, BUILTIN_RULES, **kwargs)  # type: ignore[arg-type]
        steps = kwargs.get("steps")
        flows = self.store.flows(self.run_id, steps)  # type: ignore[arg-type]
        in_memory = RunRecords(run, flows, self.store.module_tree(self.run_id))
        limits = kwargs.get("limits")
        assert check_records(in_memory, BUILTIN_RULES, limits) == report  # type: ignore[arg-type]
        return report


def batch(step: int, size: int = 16, features: int = 8) -> torch.Tensor:
    """A batch of inputs that differs at each step (seeded: the same in every run)."""
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randn(size, features, generator=generator)


def train(
    model: nn.Module,
    db: Path,
    loss_of: StepFn,
    *,
    steps: int = 4,
    grads: bool = False,
    lr: float = 0.01,
    ops: bool = False,
) -> Recorded:
    """Train ``model`` ``steps`` steps under a trace into ``db``; a non-finite loss skips the
    optimizer (as a loss scaler does), so a NaN at one step does not poison the weights."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with tracer.trace(model, store=db, name="seeded", grads=grads, ops=ops) as t:
        for step in range(steps):
            optimizer.zero_grad()
            loss = loss_of(model, step)
            loss.backward()
            if torch.isfinite(loss):
                optimizer.step()
            t.step()
    store = open_store(db)
    return Recorded(store, store.list_runs()[0].id, db)


def flagged(report: CheckReport) -> list[tuple[str, str, int, int | None]]:
    """(rule, module, step, until) of every error and warning."""
    return [(f.rule, f.module, f.step, f.until) for f in report.findings if f.severity != "info"]


def of_rule(report: CheckReport, rule: str) -> list[Finding]:
    return [f for f in report.findings if f.rule == rule]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "checks.db"


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test's models start from the same weights, whatever ran before."""
    torch.manual_seed(0)
