"""The mutable state of one traced step: pending calls, the module stack, and their finalisation.

The traced forwards (tracer.core.wrapping) and the op layer (tracer.core.op_layer) report into a
:class:`Recorder`; at the end of the step :meth:`Recorder.finish` hands the pending calls over
as a :class:`StepRecords`, which builds the frozen :class:`~tracer.records.CallRecord` objects
when they are first read. Pending calls hold only plain metadata (``torch.Size``, dtype and
device objects) and statistics indices (:class:`~tracer.core.collector.StatsCollector`), never
tensors.

Cost model: on a model of many small layers the traced forwards run about as often as the
kernels. A pending call is a plain list (no object construction); a pending tensor a plain tuple
whose names are made from cached tables when records are built; ``call_index`` is counted then
too; the frozen records are built through their slot setters (half the cost of the frozen
dataclass ``__init__``), and only when first read, so a training loop whose in-memory records
are never looked at does not pay for them. Above all, a step keeps few objects that the garbage
collector tracks: every container that outlives a couple of young collections counts towards a
full collection, which walks the whole heap (torch alone is some 180,000 objects) and was the
largest single cost of tracing a 1,000-call model (benchmarks/README.md has the figures). So
single-tensor metadata tuples and shapes-only records are shared across calls and steps
(:data:`SHARED`, ``_INTERNED``) instead of allocated per call, and statistics are integer
indices (see tracer.core.collector).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

import torch

from tracer.core.collector import StatsCollector, StepStats
from tracer.core.positions import (
    DEVICE,
    DTYPE,
    DURATION,
    IN_REF,
    INFO,
    INPUTS,
    OUT_REF,
    OUTPUTS,
    REQUIRES_GRAD,
    SHAPE,
    SLOT,
    START,
    STATS_REF,
    TYPE_NAME,
)
from tracer.core.probe import RecorderCore, new_probe
from tracer.core.stats import one_line
from tracer.core.walk import Leaf, walk_inputs, walk_output
from tracer.records import CallRecord, Role, TensorRecord

#: (slot, shape, dtype, device, requires_grad, type_name, statistics index or None), indexed by
#: SLOT ... STATS_REF (tracer.core.positions); dtype and device are torch objects (None for an
#: opaque leaf), turned into names when records are built.
PendingTensor = tuple[str, tuple[int, ...], Any, Any, bool, str, int | None]

_Tensor = torch.Tensor

#: Static facts of a call's module: (path, type name, depth).
CallInfo = tuple[str, str, int]

#: A pending call is a list indexed by INFO ... OUT_REF (tracer.core.positions).
PendingCall = list[Any]

_DTYPE_NAMES: dict[Any, str] = {None: ""}
_DEVICE_NAMES: dict[Any, str] = {None: ""}


def new_call(info: CallInfo, op: str | None = None) -> PendingCall:
    """A pending call: info, inputs, outputs, start, duration, gradients, op name, refs."""
    return [info, (), (), 0.0, None, None, op, None, None]


if TYPE_CHECKING:
    _RecorderBase = object
else:
    # Where the compiled probe is loaded, the fields the compiled fast path reads (calls, stack,
    # probe, request, on_outermost, ops_on) are a C struct's (tracer/core/_probe.cpp).
    _RecorderBase = object if RecorderCore is None else RecorderCore


class Recorder(_RecorderBase):
    """Collects the calls of the current step, in pre-order, from hooks and the op layer."""

    def __init__(self, *, stats: bool, collector: StatsCollector) -> None:
        self.stats = stats
        self.collector = collector
        # The statistics request of the hooks' fast path (None: shapes only).
        self.request: Callable[[torch.Tensor], int] | None = collector.request if stats else None
        self.calls: list[PendingCall] = []  # handed over (and replaced) at the end of a step
        self.stack: list[PendingCall] = []
        self.param_grads: dict[str, dict[str, PendingTensor]] = {}
        # Parameter name -> registration order, for stable records (fixed once the hooks exist).
        self.param_rank: dict[str, int] = {}
        self.generation = 0  # bumped per step: late gradient hooks of an old step do nothing
        self.on_outermost: Callable[[bool], None] | None = None  # op layer on/off
        self.ops_on = False  # True while the op layer's TorchFunctionMode is pushed
        self.active = False  # True while the trace is open (gradient hooks check it)
        self.internal_errors = 0  # failures inside our own hooks (never raised to the user)
        # The fast path's questions about one plain tensor: its shared metadata, and whether it
        # is the last output recorded, unchanged (then it has the same record and statistics).
        self.probe = new_probe(single_meta)

    def begin_call(self, info: CallInfo, args: Any, kwargs: Any) -> PendingCall:
        """Open a module call: it takes its ``seq`` now, before its children."""
        call = new_call(info)
        self.calls.append(call)
        self.stack.append(call)
        call[INPUTS] = self.describe_all(walk_inputs(args, kwargs))
        call[START] = time.perf_counter()
        return call

    def end_call(self, call: PendingCall, result: Any, end: float) -> list[Leaf] | None:
        """Close a module call that ended at ``end``: duration, then outputs."""
        call[DURATION] = end - call[START]
        self.pop(call)
        if result is None:
            return None
        leaves = walk_output(result)
        call[OUTPUTS] = self.describe_all(leaves)
        return leaves

    def pop(self, call: PendingCall) -> None:
        """Take ``call`` (and anything opened after it) off the stack."""
        stack = self.stack
        if stack and stack[-1] is call:
            stack.pop()
        elif call in stack:  # a child raised and was caught by its parent's forward
            del stack[stack.index(call) :]

    def add_op(
        self, op: str, type_: str, inputs: list[Leaf], outputs: list[Leaf], dt: float
    ) -> None:
        """Record one captured op, attributed to the innermost module whose forward is running."""
        path, _, depth = self.stack[-1][INFO]
        call = new_call((path, type_, depth + 1), op)
        call[DURATION] = dt
        call[INPUTS] = self.describe_all(inputs, tensors_only=True)
        call[OUTPUTS] = self.describe_all(outputs, tensors_only=True)
        self.calls.append(call)

    def add_single_op(
        self,
        names: tuple[str, str],
        x: torch.Tensor,
        result: torch.Tensor,
        dt: float,
        rearranging: bool,
    ) -> None:
        """Record a captured op of one plain tensor ``x`` (its first argument) that returned one
        plain tensor, as the hooks' fast path records a one-tensor module call: shared metadata
        tuples, ``x``'s record taken over where it is the previous call's output, unchanged,
        and ``result`` remembered for the next call. A ``rearranging`` op's result holds ``x``'s
        values in another order (a view, a reshape, a permutation: see
        tracer.core.op_layer.REARRANGING); every built-in statistic is blind to that order, so
        a result of ``x``'s dtype shares ``x``'s statistics instead of reading them again.
        Extra statistics may not be blind to it: with any registered, the result is read."""
        path, _, depth = self.stack[-1][INFO]
        call = new_call((path, names[1], depth + 1), names[0])
        call[DURATION] = dt
        probe = self.probe
        found = probe.chained(x)
        if found is None:
            meta, ref = probe.meta(x), self._request_one(x)
        else:
            meta, ref = found
        call[INPUTS], call[IN_REF] = meta, ref
        meta = call[OUTPUTS] = probe.meta(result)
        if not (rearranging and meta[DTYPE] is call[INPUTS][DTYPE] and not self.collector.extra):
            ref = self._request_one(result)  # (shapes only: None, as the input's)
        call[OUT_REF] = ref
        probe.remember(result, meta, ref)
        self.calls.append(call)

    def _request_one(self, t: torch.Tensor) -> int | None:
        """The statistics request of one plain tensor (None: shapes only, or it failed)."""
        request = self.request
        if request is None:
            return None
        try:
            return request(t)
        except Exception as exc:
            self.fail(exc)
            return None

    def describe_all(self, leaves: list[Leaf], *, tensors_only: bool = False) -> list[Any]:
        """Metadata (and a statistics request) for each leaf."""
        out: list[Any] = []
        add, describe = out.append, self.describe
        for slot, leaf in leaves:
            if type(leaf) is _Tensor or isinstance(leaf, _Tensor):
                add(describe(slot, leaf))
            elif not tensors_only:
                add((slot, (), None, None, False, type(leaf).__name__, None))
        return out

    def describe(self, slot: str, t: torch.Tensor) -> PendingTensor:
        """Metadata of one tensor; never raises (an unreadable tensor keeps its type name)."""
        try:
            kind = type(t)
            type_name = "Tensor" if kind is _Tensor else kind.__name__
            shape, dtype, device, rg = tuple(t.shape), t.dtype, t.device, t.requires_grad
        except Exception:
            return unreadable(slot, t)
        return (slot, shape, dtype, device, rg, type_name, self._request_one(t))

    def fail(self, exc: Exception) -> None:
        """Count a failure of the tracer's own hook code; the run's notes say so once per kind."""
        self.internal_errors += 1
        self.collector.note(
            f"internal:{type(exc).__name__}",
            f"the tracer's own hook code failed ({one_line(exc)}): the records of some calls "
            "lack statistics or tensors",
        )

    def finish(self, step: int) -> StepRecords:
        """Flush statistics and hand the step over (records are built when first read)."""
        calls, grads = self.calls, self.param_grads
        try:
            stats = self.collector.flush()
        finally:
            self.reset()
        return StepRecords(step, calls, grads, self.param_rank, stats)

    def reset(self) -> None:
        """Forget the step (also after a failure); the statistics buffers are kept for reuse."""
        self.calls = []
        self.stack.clear()
        self.param_grads = {}
        self.generation += 1
        self.probe.forget()


class StepRecords(Sequence[CallRecord]):
    """The records of one step, in ``seq`` order, built from the pending calls on first read.

    ``len()`` needs no records. Everything a record holds was copied out of the tensors during
    the step, so building later gives the same records as building at once.
    """

    __slots__ = ("_built", "_count", "_pending", "step")

    def __init__(
        self,
        step: int,
        calls: list[PendingCall],
        param_grads: dict[str, dict[str, PendingTensor]],
        rank: dict[str, int],
        stats: StepStats,
    ) -> None:
        self.step = step
        self._count = len(calls)
        self._pending: tuple[Any, ...] | None = (calls, param_grads, rank, stats)
        self._built: list[CallRecord] | None = None

    def records(self) -> list[CallRecord]:
        """The records as a list (built once, then shared)."""
        if self._built is None:
            assert self._pending is not None
            calls, param_grads, rank, stats = self._pending
            self._built = _records(calls, self.step, param_grads, rank, _stats_reader(stats))
            self._pending = None  # the pending state can go now
        return self._built

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> CallRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[CallRecord]: ...
    def __getitem__(self, index: int | slice) -> CallRecord | list[CallRecord]:
        return self.records()[index]

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.records())

    def __repr__(self) -> str:
        return f"StepRecords(step={self.step}, calls={len(self)})"


def _stats_reader(stats: StepStats) -> Callable[[int], Mapping[str, float]]:
    """Index -> read-only statistics, one mapping per tensor shared by all its records."""
    cache: dict[int, Mapping[str, float]] = {}

    def read(index: int) -> Mapping[str, float]:
        value = cache.get(index)
        if value is None:
            value = cache[index] = MappingProxyType(stats.get(index))
        return value

    return read


def _records(
    calls: list[PendingCall],
    step: int,
    param_grads: dict[str, dict[str, PendingTensor]],
    rank: dict[str, int],
    stats: Callable[[int], Mapping[str, float]],
) -> list[CallRecord]:
    """Frozen records in ``seq`` order; ``call_index`` counted here, in that same order (by
    the compiled twin of this function where the kernel module has it)."""
    if _build_records is not None and _C and _T:

        def param_grad_records(path: str) -> tuple[TensorRecord, ...]:
            named = param_grads[path]
            ordered = sorted(named, key=lambda n: rank.get(n, 0))
            return tuple(_tensor(named[n], "param_grad", stats) for n in ordered)

        ctx = (*_BUILD_HEAD, _freeze_grads, param_grad_records, *_BUILD_TAIL)
        built: list[CallRecord] = _build_records(calls, step, stats, param_grads, ctx)
        return built
    counts: dict[Any, int] = {}
    records = []
    for seq, (info, inputs, outputs, _, duration, grads, op, in_ref, out_ref) in enumerate(calls):
        path, type_, depth = info
        key = path if op is None else (path, op)
        index = counts.get(key, 0)
        counts[key] = index + 1
        frozen_grads = _freeze_grads(grads, stats) if grads else ()
        if index == 0 and op is None and path in param_grads:
            named = param_grads[path]
            ordered = sorted(named, key=lambda n: rank.get(n, 0))
            frozen_grads += tuple(_tensor(named[n], "param_grad", stats) for n in ordered)
        records.append(
            _call_record(
                step,
                seq,
                path,
                type_,
                index,
                "module" if op is None else "op",
                op,
                _freeze(inputs, "input", in_ref, stats),
                _freeze(outputs, "output", out_ref, stats),
                frozen_grads,
                duration,
                depth,
            )
        )
    return records


def dtype_name(dtype: torch.dtype | None) -> str:
    """``torch.float32`` -> ``"float32"`` (cached: this runs for every tensor)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def device_name(device: torch.device | None) -> str:
    """``device(type='cuda', index=0)`` -> ``"cuda:0"`` (cached)."""
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name


#: Records without statistics repeat from step to step: share them instead of rebuilding.
#: Keyed by role, then by the pending tuple itself (hashable when it has no stats ref); the
#: value is the record as a 1-tuple, ready to be a call's whole ``inputs`` or ``outputs``.
_INTERNED: dict[str, dict[PendingTensor, tuple[TensorRecord]]] = {"input": {}, "output": {}}
#: The pending tuples themselves, shared so that a step allocates (almost) nothing that the
#: garbage collector tracks: full collections, proportional to the whole heap, are triggered
#: by the number of container objects that survive, and on a model of many small layers they
#: cost more than everything else the tracer does.
SHARED: dict[PendingTensor, PendingTensor] = {}  # single_meta: the probes' make
_INTERN_LIMIT = 100_000


def single_meta(t: torch.Tensor) -> PendingTensor:
    """The shared metadata tuple of a plain tensor that is a call's only input or output."""
    try:
        meta: PendingTensor = ("0", t.shape, t.dtype, t.device, t.requires_grad, "Tensor", None)
    except Exception:  # e.g. a nested tensor has no single shape
        return unreadable("0", t)
    return SHARED.get(meta) or shared(meta)


def unreadable(slot: str, t: Any) -> PendingTensor:
    """What can be read of a tensor whose shape cannot be (a nested tensor): its type name, and
    its dtype and device unless those fail as well."""
    try:
        dtype, device = t.dtype, t.device
    except Exception:
        dtype = device = None
    return (slot, (), dtype, device, False, type(t).__name__, None)


def shared(p: PendingTensor) -> PendingTensor:
    """``p``, or the equal pending tuple seen before (only for tuples without a stats ref)."""
    known = SHARED.get(p)
    if known is None:
        if len(SHARED) < _INTERN_LIMIT:
            SHARED[p] = p
        return p
    return known


Stats = Callable[[int], Mapping[str, float]]


def _freeze(pending: Any, role: Role, ref: int | None, stats: Stats) -> tuple[TensorRecord, ...]:
    """Records of a call's inputs or outputs: one pending tuple, a list of them, or ``()``."""
    if not pending:
        return ()
    if type(pending) is tuple:  # a single pending tensor: the common case
        if ref is None:
            return _single(pending, role, stats)
        return (_with_stats(pending, role, stats(ref)),)
    return tuple([_tensor(p, role, stats) for p in pending])


def _freeze_grads(
    grads: list[tuple[PendingTensor, Role]], stats: Stats
) -> tuple[TensorRecord, ...]:
    return tuple([_tensor(p, role, stats) for p, role in grads])


def _single(p: PendingTensor, role: Role, stats: Stats) -> tuple[TensorRecord, ...]:
    if p[STATS_REF] is not None:
        return (_tensor(p, role, stats),)
    table = _INTERNED.setdefault(role, {})
    single = table.get(p)
    if single is None:
        single = (_tensor(p, role, stats),)
        if len(table) < _INTERN_LIMIT:
            table[p] = single
    return single


def _tensor(p: PendingTensor, role: Role, stats: Stats) -> TensorRecord:
    if p[STATS_REF] is not None:
        return _with_stats(p, role, stats(p[STATS_REF]))
    single = _INTERNED.setdefault(role, {}).get(p)
    if single is not None:
        return single[0]
    return _with_stats(p, role, _NO_STATS)


def _with_stats(p: PendingTensor, role: Role, values: Mapping[str, float]) -> TensorRecord:
    """The frozen record of a pending tensor with these statistics."""
    shape = p[SHAPE] if type(p[SHAPE]) is tuple else tuple(p[SHAPE])
    dtype, device = dtype_name(p[DTYPE]), device_name(p[DEVICE])
    return _tensor_record(
        p[SLOT], shape, dtype, device, p[REQUIRES_GRAD], role, p[TYPE_NAME], values
    )


_NO_STATS = TensorRecord("", (), "", "").stats


def _setters(cls: type, count: int) -> list[Callable[[Any, Any], None]]:
    """The slot setters of a record class's fields in order, or ``[]`` unless it has exactly
    ``count`` fields (the builders below are unrolled for that many)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return [cls.__dict__[n].__set__ for n in names] if len(names) == count else []


_new = object.__new__
_T = _setters(TensorRecord, 8)
_C = _setters(CallRecord, 12)


def _fast_tensor_record(
    slot: str,
    shape: tuple[int, ...],
    dtype: str,
    device: str,
    requires_grad: bool,
    role: Role,
    type_name: str,
    stats: Any,
    _t: list[Callable[[Any, Any], None]] = _T,
) -> TensorRecord:
    """``TensorRecord(...)`` through its slot setters: the frozen ``__init__`` is twice as slow."""
    obj = _new(TensorRecord)
    _t[0](obj, slot), _t[1](obj, shape), _t[2](obj, dtype), _t[3](obj, device)
    _t[4](obj, requires_grad), _t[5](obj, role), _t[6](obj, type_name), _t[7](obj, stats)
    return obj


def _fast_call_record(*values: Any, _c: list[Callable[[Any, Any], None]] = _C) -> CallRecord:
    """``CallRecord(...)`` (all twelve fields, positionally) through its slot setters."""
    obj = _new(CallRecord)
    _c[0](obj, values[0]), _c[1](obj, values[1]), _c[2](obj, values[2]), _c[3](obj, values[3])
    _c[4](obj, values[4]), _c[5](obj, values[5]), _c[6](obj, values[6]), _c[7](obj, values[7])
    _c[8](obj, values[8]), _c[9](obj, values[9]), _c[10](obj, values[10])
    _c[11](obj, values[11])
    return obj


# A record class that gains (or loses) a field falls back to its own constructor.
_tensor_record: Callable[..., TensorRecord] = _fast_tensor_record if _T else TensorRecord
_call_record: Callable[..., CallRecord] = _fast_call_record if _C else CallRecord

try:  # _records compiled (tracer/core/_speedups.c; absent from an older build of it)
    from tracer.core._speedups import build_records as _build_records
except ImportError:
    _build_records = None


def _slots(cls: type) -> tuple[Any, ...]:
    """The member descriptors of a record class's fields, in order."""
    return tuple(cls.__dict__[f.name] for f in dataclasses.fields(cls))


#: What the compiled builder reads besides a step's own data (see _speedups.c).
_BUILD_HEAD = (
    TensorRecord,
    CallRecord,
    _slots(TensorRecord),
    _slots(CallRecord),
    _DTYPE_NAMES,
    _DEVICE_NAMES,
    dtype_name,
    device_name,
    _INTERNED["input"],
    _INTERNED["output"],
    _INTERN_LIMIT,
    _NO_STATS,
)
_BUILD_TAIL = ("input", "output", "module", "op")
