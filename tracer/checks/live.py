"""Checking a run as it is written: each traced step as it lands, the whole run at the end."""

from __future__ import annotations

from collections.abc import Sequence

from tracer.checks.engine import CheckReport, check_records, check_run
from tracer.checks.findings import Finding
from tracer.checks.rules import Rule
from tracer.checks.view import RunRecords
from tracer.records import ModuleRecord, RunInfo
from tracer.store import Store


class StepChecker:
    """Checks one run step by step (``tracer run --check``): each traced step's own records.

    A rule that needs several steps (constant output, drift) says nothing here; the check of
    the whole run at the end (:meth:`report`) has them all.
    """

    def __init__(self, store: Store, run: RunInfo, rules: Sequence[Rule]) -> None:
        self.store = store
        self.run = run
        self.rules = list(rules)
        self.first_error: Finding | None = None
        self._modules: list[ModuleRecord] = []

    def check_step(self, step: int) -> list[Finding]:
        """The findings of one traced step (none when the step was not traced)."""
        flows = self.store.flows(self.run.id, [step])
        if not flows:
            return []
        if not self._modules:  # written with the first traced step
            self._modules = self.store.module_tree(self.run.id)
        report = check_records(RunRecords(self.run, flows, self._modules), self.rules)
        return list(report.findings)

    def new_error(self, step: int) -> Finding | None:
        """The run's first error, when it shows at this step; None before and after it."""
        if self.first_error is not None:
            return None
        for finding in self.check_step(step):
            if finding.severity == "error":
                self.first_error = finding
                return finding
        return None

    def report(self) -> CheckReport:
        """The whole run checked: every traced step written so far."""
        return check_run(self.store, self.store.get_run(self.run.id), self.rules)
