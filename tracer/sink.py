"""The sink interface: where a trace sends its records (memory by default, a store run writer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from tracer.records import CallRecord, ModuleRecord


@runtime_checkable
class Sink(Protocol):
    """Receives a trace's records. The trace calls the methods in this order:

    ``begin`` once when the trace opens (the model's modules as they are then, a sequence
    whose records are built when first read, and notes such as "hooks disable the
    TransformerEncoder fast path"); ``write_step`` once per traced step with all of that
    step's calls (in ``seq`` order, gradients already attached) and the metrics logged during
    that step, to be written together (one transaction in a store); ``write_metrics`` for
    metrics of steps that are not traced; ``end`` once when the trace closes, with
    ``"completed"``, ``"failed"`` (``error`` set) or ``"interrupted"``. Notes learnt while
    tracing (statistics that had to be skipped, an extra statistic that failed) are handed to
    an optional ``add_notes(notes)`` method with the new ones; a sink without it gets ``begin``
    again, with the same modules and the longer list of notes, before the step that learnt
    them is written and at the end. A sink must not keep
    references to tensors (it only ever sees records) and should make each ``write_step``
    durable on its own. ``write_step`` runs with Python's cyclic garbage collector paused (see
    ``Trace._write_step``); reference counting still frees everything acyclic at once.
    """

    def begin(self, modules: Sequence[ModuleRecord], notes: Sequence[str]) -> None: ...

    def write_step(
        self,
        step: int,
        calls: Sequence[CallRecord],
        metrics: Mapping[str, float] | None = None,
    ) -> None: ...

    def write_metrics(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def end(self, status: str, error: str | None = None) -> None: ...


class MemorySink:
    """Keeps every record in memory; the default sink of :func:`tracer.trace`.

    A step's calls are kept as handed over (the core builds the record objects on first read)
    and joined into :attr:`calls` when that is read; so are a trace's module records, listed
    in :attr:`modules` when that is first read.
    """

    def __init__(self) -> None:
        self._modules: Sequence[ModuleRecord] = []  # a list, or a snapshot not yet read
        self.notes: list[str] = []
        self._calls: list[CallRecord] = []
        self._steps: list[Sequence[CallRecord]] = []  # not yet joined into _calls
        self.metrics: list[tuple[int, str, float]] = []
        self.status: str | None = None
        self.error: str | None = None

    def begin(self, modules: Sequence[ModuleRecord], notes: Sequence[str]) -> None:
        # A trace's module records are a snapshot (is_snapshot) built when first read: kept
        # as handed over; anything else is copied now.
        self._modules = modules if getattr(modules, "is_snapshot", False) else list(modules)
        self.notes = list(notes)

    @property
    def modules(self) -> list[ModuleRecord]:
        """The traced model's module records."""
        if type(self._modules) is not list:
            self._modules = list(self._modules)
        return self._modules  # type: ignore[return-value]

    @modules.setter
    def modules(self, modules: list[ModuleRecord]) -> None:
        self._modules = modules

    def add_notes(self, notes: Sequence[str]) -> None:
        """Append notes learnt while tracing."""
        self.notes.extend(notes)

    def write_step(
        self,
        step: int,
        calls: Sequence[CallRecord],
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        self._steps.append(calls)
        if metrics:
            self.write_metrics(step, metrics)

    @property
    def calls(self) -> list[CallRecord]:
        """Every recorded call, step by step, in ``seq`` order within a step."""
        for step in self._steps:
            self._calls.extend(step)
        self._steps.clear()
        return self._calls

    def write_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.metrics.extend((step, k, float(v)) for k, v in metrics.items())

    def end(self, status: str, error: str | None = None) -> None:
        self.status, self.error = status, error
