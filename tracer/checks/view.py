"""The records a rule reads: one run's traced steps (each a flow) and each layer across steps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any, TypeVar

from tracer.records import CallKind, CallRecord, ModuleRecord, RunInfo, TensorRecord

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LayerKey:
    """One layer call across steps: the module, the nth call of it, and the op for op calls."""

    module: str
    call_index: int = 0
    kind: CallKind = "module"
    op: str | None = None

    @classmethod
    def of(cls, call: CallRecord) -> LayerKey:
        return cls(call.module, call.call_index, call.kind, call.op)


@dataclass(frozen=True)
class LayerHistory:
    """One layer's calls at every checked step where it ran, in step order."""

    key: LayerKey
    type: str
    calls: tuple[CallRecord, ...]

    def tensors(self, role: str = "output") -> dict[str, list[tuple[int, TensorRecord]]]:
        """Per slot, ``(step, record)`` for each step where the slot was recorded in ``role``."""
        found: dict[str, list[tuple[int, TensorRecord]]] = {}
        for call in self.calls:
            for t in call.tensors:
                if t.role == role:
                    found.setdefault(t.slot, []).append((call.step, t))
        return found


@dataclass(frozen=True, slots=True)
class StepFacts:
    """What one step's tensors hold at all (see :attr:`RunRecords.facts`)."""

    dtypes: frozenset[str]
    devices: frozenset[str]
    nonfinite: bool  # a statistic counts a NaN or an Inf
    grads: bool  # a gradient is recorded
    flat: bool = True  # an output of more than one value has a finite min equal to its max

    @classmethod
    def of(cls, flow: Sequence[CallRecord]) -> StepFacts:
        dtypes: set[str] = set()
        devices: set[str] = set()
        nonfinite = grads = flat = False
        for call in flow:
            grads = grads or bool(call.grads)
            for tensors in (call.inputs, call.outputs, call.grads):
                for t in tensors:
                    dtypes.add(t.dtype)
                    devices.add(t.device)
                    if not nonfinite and _nonfinite(t):
                        nonfinite = True
            if not flat:
                flat = any(_flat(t) for t in call.outputs)
        return cls(frozenset(dtypes), frozenset(devices), nonfinite, grads, flat)


def _nonfinite(tensor: TensorRecord) -> bool:
    """Whether a record's statistics count a NaN or an Inf."""
    stats = tensor.stats
    return bool(stats.get("nan_count") or stats.get("inf_count"))


def _flat(tensor: TensorRecord) -> bool:
    stats = tensor.stats
    low = stats.get("min")
    return (
        low is not None
        and math.isfinite(low)
        and low == stats.get("max")
        and stats.get("numel", 0) > 1
    )


_ATTRIBUTES = frozenset(("role", "slot", "shape", "dtype", "device", "requires_grad", "type_name"))


def _getter(field: str) -> Callable[[TensorRecord], Any]:
    if field in _ATTRIBUTES:
        return attrgetter(field)
    return lambda t: t.stats.get(field)


@dataclass(frozen=True)
class RunRecords:
    """What the rules of one check read: the run, its checked steps' flows, its modules.

    ``flows`` maps each checked step (ascending) to its calls in flow order. Built from flows in
    memory (one step as it is traced), or read from a store (:class:`tracer.checks.stored.
    StoredRecords`, what :func:`tracer.checks.engine.check_run` uses), where a flow is read only
    when a rule asks for it: a rule that reads every step should use the cheaper views,
    :attr:`skeleton` (the calls without their tensors), :meth:`values` (chosen fields of the
    tensor records of chosen roles) and :attr:`facts` (what each step holds at all), and
    :meth:`flows_at` for the flows of the steps it does need.
    """

    run: RunInfo
    flows: Mapping[int, Sequence[CallRecord]]
    modules: Sequence[ModuleRecord] = field(default=())

    @cached_property
    def steps(self) -> tuple[int, ...]:
        """The checked steps, ascending."""
        return tuple(sorted(self.flows))

    def flow(self, step: int) -> Sequence[CallRecord]:
        return self.flows[step]

    def flows_at(self, steps: Iterable[int]) -> Iterator[tuple[int, Sequence[CallRecord]]]:
        """``(step, flow)`` for each of ``steps`` (checked ones), in the order given."""
        for step in steps:
            yield step, self.flows[step]

    @cached_property
    def skeleton(self) -> Mapping[int, Sequence[CallRecord]]:
        """Each checked step's calls in flow order, for what needs no tensor: read from a store,
        the calls come without their tensor records (``inputs`` and the rest are empty)."""
        return self.flows

    def call_values(self, fields: Sequence[str]) -> list[tuple[Any, ...]]:
        """``(step, seq, *fields)`` of each checked call, in flow order: a field is a
        CallRecord attribute (``module``, ``type``, ``call_index``, ``kind``, ``op``, ``depth``,
        ``duration_s``). Read from a store, no record is built."""
        get = attrgetter(*fields) if fields else None
        found: list[tuple[Any, ...]] = []
        for step, flow in self.skeleton.items():
            for call in flow:
                if get is None:
                    found.append((step, call.seq))
                elif len(fields) == 1:
                    found.append((step, call.seq, get(call)))
                else:
                    found.append((step, call.seq, *get(call)))
        return found

    def values(
        self, roles: Collection[str], fields: Sequence[str], *, nonfinite: bool = False
    ) -> list[tuple[Any, ...]]:
        """``(step, seq, *fields)`` of each tensor record whose role is in ``roles``, in flow
        order (by step, then call, then inputs, outputs, gradients as the call holds them);
        with ``nonfinite``, only the records whose statistics count a NaN or an Inf.

        A field is a TensorRecord attribute (``slot``, ``shape``, ``dtype``, ``device``,
        ``requires_grad``, ``type_name``, ``role``) or a statistic's name (None where a record
        lacks it). Read from a store, no record is built.
        """
        getters = [_getter(f) for f in fields]
        wanted = frozenset(roles)
        found: list[tuple[Any, ...]] = []
        for step in self.steps:
            for call in self.flows[step]:
                for t in call.tensors:
                    if t.role in wanted and (not nonfinite or _nonfinite(t)):
                        found.append((step, call.seq, *(get(t) for get in getters)))
        return found

    @cached_property
    def module_types(self) -> dict[str, str]:
        """Module path -> type name, from the module records, else from the calls."""
        types = {m.path: m.type for m in self.modules}
        for calls in self.skeleton.values():
            for call in calls:
                if call.kind == "module":
                    types.setdefault(call.module, call.type)
        return types

    @cached_property
    def param_dtypes(self) -> dict[str, frozenset[str]]:
        """Module path -> the dtypes of the parameters registered directly on it."""
        return {m.path: frozenset(p.dtype for p in m.parameters) for m in self.modules}

    @cached_property
    def module_records(self) -> dict[str, ModuleRecord]:
        """Module path -> its static record (empty when the run recorded no module table)."""
        return {m.path: m for m in self.modules}

    @cached_property
    def model_dtypes(self) -> frozenset[str]:
        """The dtypes of every parameter of the model (a mixed-precision model has several)."""
        return frozenset().union(*self.param_dtypes.values())

    def has_params(self, path: str) -> bool:
        """Whether the module at ``path`` has parameters registered directly on it."""
        return path in self.learned

    @cached_property
    def learned(self) -> frozenset[str]:
        """Paths of the modules with parameters registered directly on them."""
        return frozenset(m.path for m in self.modules if m.parameters)

    @cached_property
    def leaves(self) -> dict[int, tuple[bool, ...]]:
        """Per step, for each call in flow order: whether it ran no traced call inside it."""
        depths: dict[int, list[int]] = {step: [] for step in self.steps}
        for step, _, depth in self.call_values(("depth",)):
            depths[step].append(depth)
        found = {}
        for step, flow in depths.items():
            nested = [a < b for a, b in itertools.pairwise(flow)]
            found[step] = (*(not n for n in nested), True) if flow else ()
        return found

    @cached_property
    def facts(self) -> dict[int, StepFacts]:
        """Per step, what its tensors hold at all: which dtypes and devices, any NaN or Inf,
        any gradient. One pass that lets a rule skip the steps where it cannot fire."""
        return {step: StepFacts.of(flow) for step, flow in self.flows.items()}

    def shared(self, name: str, build: Callable[[RunRecords], T]) -> T:
        """A value derived from these records, built once and shared by every rule reading it."""
        memo: dict[str, Any] = self.__dict__.setdefault("_shared", {})
        if name not in memo:
            memo[name] = build(self)
        return memo[name]  # type: ignore[no-any-return]

    @cached_property
    def layers(self) -> tuple[LayerHistory, ...]:
        """Each layer call across the checked steps, in order of first appearance in the flow."""
        calls: dict[tuple[str, int, CallKind, str | None], list[CallRecord]] = {}
        for step in self.steps:
            for call in self.flows[step]:
                key = (call.module, call.call_index, call.kind, call.op)
                found = calls.get(key)
                if found is None:
                    calls[key] = [call]
                else:
                    found.append(call)
        return tuple(LayerHistory(LayerKey(*k), v[0].type, tuple(v)) for k, v in calls.items())
