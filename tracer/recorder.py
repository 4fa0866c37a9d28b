"""The mutable state of one traced step: pending calls, the module stack, and their finalisation.

Hooks (tracer.hooks) and the op layer (tracer.ops) report into a :class:`Recorder`; at the end
of the step :meth:`Recorder.finish` turns the pending calls into frozen
:class:`~tracer.records.CallRecord` objects. Pending calls hold only plain metadata and
:class:`~tracer.collector.StatsRef` objects, never tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from tracer.collector import StatsCollector, StatsRef
from tracer.records import CallKind, CallRecord, Role, TensorRecord
from tracer.walk import Leaf, walk_inputs, walk_output

#: (slot, shape, dtype, device, requires_grad, role, type_name, stats ref or None)
PendingTensor = tuple[str, tuple[int, ...], str, str, bool, Role, str, StatsRef | None]

_DTYPE_NAMES: dict[torch.dtype, str] = {}
_DEVICE_NAMES: dict[torch.device, str] = {}


class PendingCall:
    """A call being recorded: metadata now, statistics filled when the step is flushed."""

    __slots__ = (
        "call_index",
        "depth",
        "duration",
        "grads",
        "inputs",
        "kind",
        "module",
        "op",
        "outputs",
        "seq",
        "start",
        "type",
    )

    def __init__(
        self, seq: int, module: str, type_: str, call_index: int, kind: CallKind, depth: int
    ) -> None:
        self.seq, self.module, self.type, self.call_index = seq, module, type_, call_index
        self.kind: CallKind = kind
        self.depth = depth
        self.op: str | None = None
        self.inputs: list[PendingTensor] = []
        self.outputs: list[PendingTensor] = []
        self.grads: list[PendingTensor] = []
        self.start = 0.0
        self.duration: float | None = None

    def to_record(self, step: int) -> CallRecord:
        """The frozen record of this call (statistics must have been flushed)."""
        return CallRecord(
            step,
            self.seq,
            self.module,
            self.type,
            self.call_index,
            self.kind,
            self.op,
            _freeze(self.inputs),
            _freeze(self.outputs),
            _freeze(self.grads) if self.grads else (),
            self.duration,
            self.depth,
        )


class Recorder:
    """Collects the calls of the current step, in pre-order, from hooks and the op layer."""

    def __init__(self, *, stats: bool, collector: StatsCollector) -> None:
        self.stats = stats
        self.collector = collector
        self.calls: list[PendingCall] = []
        self.stack: list[PendingCall] = []
        self.counts: dict[tuple[str, str], int] = {}  # (module, op) -> ops seen
        self.module_counts: dict[str, int] = {}  # module path -> calls seen
        self.param_grads: dict[str, dict[str, PendingTensor]] = {}
        self.param_rank: dict[str, int] = {}  # name -> registration order, for stable records
        self.generation = 0  # bumped per step: late gradient hooks of an old step do nothing
        self.on_outermost: Callable[[bool], None] | None = None  # op layer on/off
        self.ops_on = False  # True while the op layer's TorchFunctionMode is pushed
        self.active = False  # True while the trace is open (gradient hooks check it)
        self.internal_errors = 0  # failures inside our own hooks (never raised to the user)

    def open_call(self, path: str) -> PendingCall | None:
        """The innermost open call of module ``path`` (normally the top of the stack)."""
        for call in reversed(self.stack):
            if call.module == path and call.kind == "module":
                return call
        return None

    def begin_call(self, path: str, type_: str, depth: int, args: Any, kwargs: Any) -> None:
        """Open a module call (pre-hook): it takes its ``seq`` now, before its children."""
        counts = self.module_counts
        index = counts.get(path, 0)
        counts[path] = index + 1
        call = PendingCall(len(self.calls), path, type_, index, "module", depth)
        self.calls.append(call)
        self.stack.append(call)
        if not kwargs and len(args) == 1 and type(args[0]) is torch.Tensor:
            call.inputs = [self.describe("0", args[0], "input")]  # the common case, no walking
        else:
            call.inputs = self.describe_all(walk_inputs(args, kwargs), "input")
        call.start = time.perf_counter()

    def end_call(self, call: PendingCall, result: Any) -> list[Leaf] | None:
        """Close a module call (post-hook): duration, then outputs (returned for grad hooks)."""
        call.duration = time.perf_counter() - call.start
        stack = self.stack
        if stack and stack[-1] is call:
            stack.pop()
        elif call in stack:  # a child raised and was caught by its parent's forward
            del stack[stack.index(call) :]
        if result is None:
            return None
        if type(result) is torch.Tensor:
            call.outputs = [self.describe("0", result, "output")]
            return None if not result.requires_grad else [("0", result)]
        leaves = walk_output(result)
        call.outputs = self.describe_all(leaves, "output")
        return leaves

    def add_op(
        self, op: str, type_: str, inputs: list[Leaf], outputs: list[Leaf], dt: float
    ) -> None:
        """Record one captured op, attributed to the innermost module whose forward is running."""
        owner = self.stack[-1]
        key = (owner.module, op)
        index = self.counts.get(key, 0)
        self.counts[key] = index + 1
        call = PendingCall(len(self.calls), owner.module, type_, index, "op", owner.depth + 1)
        call.op = op
        call.duration = dt
        call.inputs = self.describe_all(inputs, "input", tensors_only=True)
        call.outputs = self.describe_all(outputs, "output", tensors_only=True)
        self.calls.append(call)

    def describe_all(
        self, leaves: list[Leaf], role: Role, *, tensors_only: bool = False
    ) -> list[PendingTensor]:
        """Metadata (and a statistics request) for each leaf."""
        out = []
        for slot, leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                out.append(self.describe(slot, leaf, role))
            elif not tensors_only:
                out.append((slot, (), "", "", False, role, type(leaf).__name__, None))
        return out

    def describe(self, slot: str, t: torch.Tensor, role: Role) -> PendingTensor:
        """Metadata of one tensor; never raises (an unreadable tensor keeps its type name)."""
        try:
            type_name = "Tensor" if type(t) is torch.Tensor else type(t).__name__
            dtype = _DTYPE_NAMES.get(t.dtype) or dtype_name(t.dtype)
            device = _DEVICE_NAMES.get(t.device) or device_name(t.device)
            shape = tuple(t.shape)
        except Exception:
            return (slot, (), "", "", False, role, type(t).__name__, None)
        try:
            ref = self.collector.request(t) if self.stats else None
        except Exception:  # statistics are best effort; the metadata is kept
            self.internal_errors += 1
            ref = None
        return (slot, shape, dtype, device, t.requires_grad, role, type_name, ref)

    def finish(self, step: int) -> list[CallRecord]:
        """Flush statistics, attach parameter gradients, and return the step's records."""
        self.collector.flush()
        self._attach_param_grads()
        records = [call.to_record(step) for call in self.calls]
        self.reset()
        return records

    def reset(self) -> None:
        """Forget the step (also after a failure); the statistics buffers are kept for reuse."""
        self.calls, self.stack = [], []
        self.counts.clear()
        self.module_counts.clear()
        self.param_grads.clear()
        self.generation += 1

    def _attach_param_grads(self) -> None:
        if not self.param_grads:
            return
        first = {c.module: c for c in self.calls if c.kind == "module" and c.call_index == 0}
        for path, grads in self.param_grads.items():
            call = first.get(path)
            if call is not None:
                rank = self.param_rank
                call.grads.extend(
                    grads[name] for name in sorted(grads, key=lambda n: rank.get(n, 0))
                )


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (cached: this runs for every tensor)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def device_name(device: torch.device) -> str:
    """``device(type='cuda', index=0)`` -> ``"cuda:0"`` (cached)."""
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name


#: Records without statistics repeat from step to step: share them instead of rebuilding.
_INTERNED: dict[tuple[Any, ...], TensorRecord] = {}
_INTERN_LIMIT = 100_000


def _freeze(pending: list[PendingTensor]) -> tuple[TensorRecord, ...]:
    if len(pending) == 1:  # the common case, without a generator
        return (_record(pending[0]),)
    return tuple([_record(p) for p in pending])


def _record(p: PendingTensor) -> TensorRecord:
    ref = p[7]
    if ref is not None:
        return TensorRecord(p[0], p[1], p[2], p[3], p[4], p[5], p[6], ref.frozen())
    key = p[:7]
    record = _INTERNED.get(key)
    if record is None:
        record = TensorRecord(*key)
        if len(_INTERNED) < _INTERN_LIMIT:
            _INTERNED[key] = record
    return record
