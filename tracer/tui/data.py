"""The inspector's data layer: read-side access to a run store for the UI (no Textual imports).

Every method may be called from a worker thread. Finished runs never change, so their flows
and module trees are cached; a running run's data is always read fresh.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tracer.records import (
    CallRecord,
    MetricRecord,
    ModuleRecord,
    RunInfo,
    TensorRecord,
    literal,
)

if TYPE_CHECKING:
    from tracer.checks import CheckReport, Rule
    from tracer.store import Store
    from tracer.store.diff import FlowDiff

#: Statistics the layer screen plots across steps.
SERIES_STATS: tuple[str, ...] = ("mean", "std", "zero_frac")

#: Check reports kept (a few per run at most: one per size and status the run was seen at).
REPORTS_KEPT = 2048
#: A check reads a run's steps a slice at a time, each slice about this long (seconds), and
#: waits between slices while the user is at the keys (for QUIET_S after the last key).
SLICE_S = 0.02
QUIET_S = 0.3

ReportKey = tuple[int, int, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Compared:
    """A diff of two runs with what the diff screen needs around it."""

    diff: FlowDiff
    steps_a: list[int]
    steps_b: list[int]
    modules_a: list[ModuleRecord]
    modules_b: list[ModuleRecord]


@dataclass(frozen=True, slots=True)
class LayerSeries:
    """One tensor slot of one layer across steps: each statistic as ``(step, value)`` pairs."""

    role: str
    slot: str
    stats: dict[str, list[tuple[int, float]]]
    grad_norm: list[tuple[int, float]]


class StoreReader:
    """What the screens ask of the store, with small caches for finished runs."""

    def __init__(self, store: Store, location: str) -> None:
        self.store = store
        self.location = location
        self._lock = threading.Lock()
        self._flows: OrderedDict[tuple[int, int], list[CallRecord]] = OrderedDict()
        self._modules: dict[int, list[ModuleRecord]] = {}
        self._reports: OrderedDict[ReportKey, CheckReport] = OrderedDict()
        self._checking: dict[ReportKey, threading.Lock] = {}
        self._quiet_from = 0.0

    @classmethod
    def open(cls, db_url: str | None) -> StoreReader:
        """Open the store at ``db_url`` (None: ``$TRACER_DB``, else ``./tracer.db``)."""
        from tracer.store import open_store

        store = open_store(db_url)
        return cls(store, describe_location(db_url))

    def runs(self) -> list[RunInfo]:
        """All runs, newest first."""
        return self.store.list_runs()

    def run(self, run_id: int | str) -> RunInfo:
        """One run by id, name or ``"latest"``."""
        return self.store.get_run(run_id)

    def steps(self, run_id: int) -> list[int]:
        """The run's traced steps, in order."""
        return self.store.steps(run_id)

    def flow(self, run: RunInfo, step: int) -> list[CallRecord]:
        """The ordered calls of one step (cached once the run has finished)."""
        key = (run.id, step)
        with self._lock:
            if key in self._flows:
                self._flows.move_to_end(key)
                return self._flows[key]
        calls = self.store.flow(run.id, step)
        if run.status != "running":
            with self._lock:
                self._flows[key] = calls
                while len(self._flows) > 32:
                    self._flows.popitem(last=False)
        return calls

    def modules(self, run: RunInfo) -> list[ModuleRecord]:
        """The run's module tree in ``named_modules()`` order (cached)."""
        with self._lock:
            cached = self._modules.get(run.id)
        if cached is not None:
            return cached
        modules = self.store.module_tree(run.id)
        if run.status != "running" or modules:
            with self._lock:
                self._modules[run.id] = modules
        return modules

    def metrics(self, run_id: int) -> list[MetricRecord]:
        """Every logged metric of the run."""
        return self.store.metrics(run_id)

    def layer_series(self, run_id: int, call: CallRecord, tensor: TensorRecord) -> LayerSeries:
        """The statistics of one tensor slot of one call across all traced steps."""
        where: dict[str, Any] = {
            "slot": tensor.slot,
            "role": tensor.role,
            "call_index": call.call_index,
            "kind": call.kind,
            "op": call.op,
        }
        stats = {s: self.store.series(run_id, call.module, stat=s, **where) for s in SERIES_STATS}
        grad_norm: list[tuple[int, float]] = []
        if tensor.role in ("output", "grad", "param_grad"):
            # the gradient flowing into an output has the output's slot; a parameter's is itself
            role = "param_grad" if tensor.role == "param_grad" else "grad"
            grad = {**where, "role": role}
            grad_norm = self.store.series(run_id, call.module, stat="l2", **grad)
        return LayerSeries(tensor.role, tensor.slot, stats, grad_norm)

    def report(self, run: RunInfo, rules: Sequence[Rule]) -> CheckReport:
        """The findings of ``rules`` on the run, checked once per (steps recorded, status).

        A run still being written is checked again once it has grown or finished; two threads
        asking for the same run at once wait for one check instead of making two.
        """
        from tracer.checks import RunRecords, check_records

        key = report_key(run, rules)
        with self._lock:
            gate = self._checking.setdefault(key, threading.Lock())
        try:
            with gate:
                cached = self.cached_report(run, rules)
                if cached is not None:
                    return cached
                flows = self._read_flows(run.id, self.store.steps(run.id))
                records = RunRecords(run, flows, self.store.module_tree(run.id))
                found = check_records(records, rules)
                with self._lock:
                    self._reports[key] = found
                    while len(self._reports) > REPORTS_KEPT:
                        self._reports.popitem(last=False)
                return found
        finally:
            with self._lock:
                self._checking.pop(key, None)

    def hold_background(self) -> None:
        """The user pressed a key: checks under way pause their reading for a moment."""
        self._quiet_from = time.monotonic() + QUIET_S

    def _read_flows(self, run_id: int, steps: list[int]) -> dict[int, list[CallRecord]]:
        """The steps' flows, read in slices of about SLICE_S each.

        A check runs in a worker thread while the UI runs in the main one, and both need the
        GIL: a big run read in one go (seconds) made every key press wait several times as
        long. Between slices the read waits while the user is at the keys.
        """
        flows: dict[int, list[CallRecord]] = {}
        size, done = 1, 0
        while done < len(steps):
            while time.monotonic() < self._quiet_from:
                time.sleep(0.02)
            start = time.monotonic()
            flows.update(self.store.flows(run_id, steps[done : done + size]))
            done += size
            took = max(time.monotonic() - start, 1e-3)
            size = max(1, min(256, int(size * SLICE_S / took)))
        return flows

    def cached_report(self, run: RunInfo, rules: Sequence[Rule]) -> CheckReport | None:
        """The report of an earlier check of the run as it is now, if any (never reads)."""
        with self._lock:
            found = self._reports.get(report_key(run, rules))
            if found is not None:
                self._reports.move_to_end(report_key(run, rules))
            return found

    def delete(self, run_id: int) -> None:
        """Delete a run and everything recorded for it; never one that may still be written."""
        from tracer.store import StoreError
        from tracer.store.removal import why_not_removable

        why = why_not_removable(self.store, run_id)
        if why is not None:
            raise StoreError(f"run {run_id} {why}; not deleted (tracer rm --force deletes it)")
        self.store.delete_run(run_id)
        with self._lock:
            self._modules.pop(run_id, None)
            for key in [k for k in self._flows if k[0] == run_id]:
                del self._flows[key]
            for gone in [k for k in self._reports if k[0] == run_id]:
                del self._reports[gone]

    def diff(self, run_a: int, run_b: int, step_a: int | None, step_b: int | None) -> Compared:
        """Two runs' flows aligned at the given steps (default: their first common step)."""
        from tracer.store.diff import diff_flows, pick_steps

        left, right = self.run(run_a), self.run(run_b)
        steps_a, steps_b = self.steps(left.id), self.steps(right.id)
        step_a, step_b = pick_steps(steps_a, steps_b, step_a, step_b)
        modules_a, modules_b = self.modules(left), self.modules(right)
        result = diff_flows(
            self.flow(left, step_a) if step_a is not None else [],
            self.flow(right, step_b) if step_b is not None else [],
            config_a=left.config,
            config_b=right.config,
            modules_a=modules_a,
            modules_b=modules_b,
        )
        result = replace(result, run_a=left, run_b=right, step_a=step_a, step_b=step_b)
        return Compared(result, steps_a, steps_b, modules_a, modules_b)

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()


def report_key(run: RunInfo, rules: Sequence[Rule]) -> ReportKey:
    """What a check's result depends on: the run, how far it got, and the rules."""
    return (run.id, run.steps, run.status, tuple(rule.name for rule in rules))


def describe_location(db_url: str | None) -> str:
    """A short, password-free description of where the database is (a path as given)."""
    from tracer.store.engine import location

    raw = location(db_url)
    if "://" in raw and "@" in raw:
        scheme, rest = raw.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return raw


#: A longer error message ends in an ellipsis.
MESSAGE_LIMIT = 300


def describe_error(exc: BaseException) -> str:
    """A one-line message for a failed query (the store's own errors read as they are)."""
    from tracer.store import StoreError

    if isinstance(exc, StoreError):
        return literal(exc, MESSAGE_LIMIT) or type(exc).__name__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {literal(text[0], MESSAGE_LIMIT) if text else 'no details'}"
