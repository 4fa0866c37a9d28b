"""The trace session: owns every hook, closes steps, and hands records to the sink."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from torch import nn

from tracer.core.collector import StatsCollector
from tracer.core.module_records import ModuleRecords, capture_modules
from tracer.core.notes import collect_notes
from tracer.core.op_layer import OpLayer
from tracer.core.stats import StatFn
from tracer.core.step_state import Recorder
from tracer.core.wrapping import HookSet
from tracer.records import CallRecord, ModuleRecord, RunInfo
from tracer.sink import MemorySink, Sink

_T = TypeVar("_T")

#: Modules currently under an open trace: id(module) -> a weak reference to it (a dropped model
#: is forgotten: its reference is dead, and a new module that reuses its id is not traced).
_TRACED: dict[int, weakref.ref[nn.Module]] = {}


class TraceError(RuntimeError):
    """A misuse of a trace (double tracing, ``step()`` inside a forward, a closed trace)."""


class Trace:
    """One tracing session over a model; use it as a context manager (see :func:`tracer.trace`)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        sink: Sink | None = None,
        every: int = 1,
        stats: bool = True,
        ops: bool = False,
        grads: bool = False,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        extra_stats: Mapping[str, StatFn] | None = None,
        run: RunInfo | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.sink: Sink = sink if sink is not None else MemorySink()
        self.every = every
        self.ops, self.grads, self.stats = ops, grads, stats
        self.run = run  # the store's run when tracing into a store
        self._modules: ModuleRecords | list[ModuleRecord] = []  # captured when it opens
        self.notes: list[str] = []
        self._step = 0
        self._state = "new"
        self._last: Sequence[CallRecord] = []
        self._metrics: dict[str, float] = {}  # logged in the current traced step
        self._on_close = on_close
        self._rec = Recorder(stats=stats, collector=StatsCollector(extra_stats))
        # The model's modules, walked once: the hooks, the records, the claim and its release.
        self._named = named_modules(model)
        self._hooks = _without_gc(
            len(self._named),
            HookSet,
            model,
            self._rec,
            grads=grads,
            include=include,
            exclude=exclude,
            named=self._named,
        )
        self._ops = OpLayer(self._rec) if ops else None

    def record_into(self, sink: Sink, run: RunInfo, on_close: Callable[[], None] | None) -> None:
        """Record into a store's run: its writer as the sink, ``on_close`` run after the end.

        Called before the trace opens, once the arguments have been checked (so a bad argument
        never leaves a run behind)."""
        if self._state != "new":
            raise RuntimeError("a trace records into a run only before it opens")
        self.sink, self.run, self._on_close = sink, run, on_close

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Trace:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None:
            self.close()
        elif isinstance(exc, KeyboardInterrupt):
            self.close("interrupted", "KeyboardInterrupt", quiet=True)
        else:
            self.close("failed", f"{type(exc).__name__}: {exc}", quiet=True)

    def open(self) -> None:
        """Claim the model, describe it to the sink and attach the hooks."""
        if self._state != "new":
            raise TraceError("this trace was already opened; create a new tracer.trace(...)")
        _claim(self._named)
        try:
            self._modules = _without_gc(len(self._named), capture_modules, self.model, self._named)
            self.notes = collect_notes(
                self.model,
                self._hooks.paths,
                ops=self.ops,
                torch_stats=self.stats and not self._rec.collector.uses_kernel,
                named=self._named,
                encoder_layers=self._hooks.encoder_layers,
            )
            self.sink.begin(self._modules, self.notes)
            self._rec.active = True
            self._state = "open"
            if self._traced(self._step):
                self._hooks.attach()
        except BaseException:
            self._release()
            raise

    def close(
        self, status: str = "completed", error: str | None = None, *, quiet: bool = False
    ) -> None:
        """Detach every hook, write the pending step, end the sink (``quiet``: never raise)."""
        if self._state != "open":
            return
        self._state = "closed"
        try:
            self._release()
            if self._rec.calls or self._metrics:
                self._write_step()  # a partial step of a failed forward is still written
            else:
                self._publish_notes()  # (_write_step publishes them after the step)
        except Exception as err:
            if not quiet:
                self._end_sink("failed", f"{type(err).__name__}: {err}", quiet=True)
                raise
        self._end_sink(status, error, quiet=quiet)

    def _release(self) -> None:
        self._rec.active = False
        try:
            self._hooks.detach()
        finally:
            if self._ops is not None:
                self._ops.switch(False)  # after a KeyboardInterrupt mid-forward
            self._rec.stack.clear()
            _unclaim(self._named)

    def _end_sink(self, status: str, error: str | None, *, quiet: bool) -> None:
        try:
            self.sink.end(status, error)
        except Exception:
            if not quiet:
                raise
        finally:
            if self._on_close is not None:
                self._on_close()

    def _publish_notes(self) -> None:
        """Hand the notes learnt while tracing (statistics skipped, extra statistics that
        failed) to the sink: ``add_notes`` where it has one, else ``begin`` again with the
        same modules and the longer list."""
        new = self._rec.collector.take_notes()
        if not new:
            return
        self.notes.extend(new)
        add_notes = getattr(self.sink, "add_notes", None)
        if callable(add_notes):
            add_notes(new)
        else:
            self.sink.begin(self._modules, list(self.notes))

    @property
    def captured_modules(self) -> Sequence[ModuleRecord]:
        """The module records as captured at open, not built yet where none was read: a
        :class:`~tracer.core.module_records.ModuleRecords` (``counts()`` gives the parameter
        counts without building them); empty before the trace opens."""
        return self._modules

    @property
    def modules(self) -> list[ModuleRecord]:
        """The model's module records as they were when the trace opened (built on first read;
        empty before it opens)."""
        records = self._modules
        return records.records() if isinstance(records, ModuleRecords) else records

    # -- steps -------------------------------------------------------------------------------

    @property
    def step_index(self) -> int:
        """The current step (0-based): the one the next forward belongs to."""
        return self._step

    def step(self) -> None:
        """Close the current step: its records go to the sink; the step counter advances."""
        if self._state != "open":
            raise TraceError("t.step() on a trace that is not open (use it inside `with`)")
        if self._rec.stack:
            raise TraceError("t.step() was called inside a forward; call it after the step")
        if self._traced(self._step):
            self._write_step()
        self._step += 1
        if self._traced(self._step):
            self._hooks.attach()
        else:
            self._hooks.detach()  # untraced steps run with no hook at all

    def _traced(self, step: int) -> bool:
        return step % self.every == 0

    def _write_step(self) -> None:
        records = self._rec.finish(self._step)
        metrics, self._metrics = self._metrics, {}
        if records or metrics:  # the metrics travel with the records: one transaction in a store
            # The step's records are acyclic: a collection while the sink builds them would
            # only promote them and bring on a full one (why: tracer.core.step_state). Sinks
            # are promised this pause (tracer.sink.Sink), whatever the step's size.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self.sink.write_step(self._step, records, metrics or None)
            finally:
                if collecting:
                    gc.enable()
        if records:
            self._last = records
        self._publish_notes()  # after the step: a failing notes write never costs its records

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Run a block (an evaluation pass) without recording it: hooks off, then back on."""
        if self._state != "open":
            yield
            return
        if self._rec.stack:
            raise TraceError("paused() was entered inside a forward; use it between steps")
        self._hooks.detach()
        try:
            yield
        finally:
            if self._state == "open" and self._traced(self._step):
                self._hooks.attach()

    def log(self, metrics: Mapping[str, Any] | None = None, /, **values: Any) -> None:
        """Log scalar metrics (loss, accuracy) at the current step: ``t.log(loss=0.3)``."""
        merged = {**(metrics or {}), **values}
        clean: dict[str, float] = {}
        for name, value in merged.items():
            try:
                clean[str(name)] = float(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"metric {name!r} must be a number, got {type(value).__name__}"
                ) from None
        if not clean:
            return
        if self._traced(self._step):
            self._metrics.update(clean)  # written with the step's records by step()
        else:
            self.sink.write_metrics(self._step, clean)

    # -- reading back ------------------------------------------------------------------------

    @property
    def calls(self) -> list[CallRecord]:
        """Recorded calls: all of them with the in-memory sink, else those of the last step."""
        if isinstance(self.sink, MemorySink):
            return list(self.sink.calls)
        return list(self._last)

    def flow(self, step: int | None = None) -> list[CallRecord]:
        """The calls of one step (default: the last recorded step) in execution order."""
        calls = self.calls
        if step is None:
            step = calls[-1].step if calls else 0
        return sorted((c for c in calls if c.step == step), key=lambda c: c.seq)

    @property
    def internal_errors(self) -> int:
        """How many times the tracer's own hook code failed (recorded calls may be partial)."""
        return self._rec.internal_errors


_NAMED_MODULES = nn.Module.named_modules
try:  # the walk below, compiled (tracer/core/_speedups.c; absent from an older build of it)
    from tracer.core._speedups import walk_modules as _walk
except ImportError:
    _walk = None


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``list(model.named_modules())``, walked with a stack of the open modules' children
    rather than a generator per module, where every class has nn.Module's own
    ``named_modules`` (else that list itself); compiled where the kernel module is built."""
    if _walk is not None:
        walked: list[tuple[str, nn.Module]] | None = _walk(model, _NAMED_MODULES)
        return list(model.named_modules()) if walked is None else walked
    if type(model).named_modules is not _NAMED_MODULES:
        return list(model.named_modules())
    found = [("", model)]
    if not model._modules:
        return found
    memo = {model}  # each module listed once, where it is first met
    stack = [("", iter(model._modules.items()))]
    while stack:
        prefix, children = stack[-1]
        for name, child in children:
            if child is None:
                continue
            if type(child).named_modules is not _NAMED_MODULES:
                return list(model.named_modules())
            if child in memo:
                continue
            memo.add(child)
            path = f"{prefix}.{name}" if prefix else name
            found.append((path, child))
            if child._modules:  # its subtree next, then the rest of these children
                stack.append((path, iter(child._modules.items())))
                break
        else:
            stack.pop()
    return found


def _claim(named: list[tuple[str, nn.Module]]) -> None:
    traced = _TRACED
    if traced:  # else nothing is traced: nothing to check
        for path, module in named:
            ref = traced.get(id(module))
            if ref is not None and ref() is module:
                where = "the model" if path == "" else f"its submodule {path!r}"
                raise TraceError(
                    f"{where} is already traced by an open tracer.trace(); close that trace first"
                )
        if len(traced) > _SWEEP_AT[0]:  # traces dropped without closing left their entries
            for key in [key for key, ref in traced.items() if ref() is None]:
                del traced[key]
            _SWEEP_AT[0] = 2 * len(traced) + _SWEEP_MIN
    modules = [module for _, module in named]
    traced.update(zip(map(id, modules), map(weakref.ref, modules), strict=True))


def _unclaim(named: list[tuple[str, nn.Module]]) -> None:
    """Release what :func:`_claim` took (the modules are alive: their ids are still theirs)."""
    pop = _TRACED.pop
    for _, module in named:
        pop(id(module), None)


#: Dead entries are swept when the registry grows past this (then twice what is left, at least).
_SWEEP_MIN = 10_000
_SWEEP_AT = [_SWEEP_MIN]


def _without_gc(size: int, build: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``build(*args, **kwargs)``, with the garbage collector paused when it builds for more than
    a few modules (``size``): what it builds is acyclic or dropped whole, and the young
    collections its allocations set off would only promote it (tracer.core.step_state says why
    that costs)."""
    collecting = size > _PAUSE_FROM and gc.isenabled()
    if collecting:
        gc.disable()
    try:
        return build(*args, **kwargs)
    finally:
        if collecting:
            gc.enable()


#: Up to this many modules allocate too little to set off a collection (at 700 allocations).
_PAUSE_FROM = 32
