"""The records a rule reads: one run's traced steps (each a flow) and each layer across steps."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
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
    nonfinite: bool
    grads: bool

    @classmethod
    def of(cls, flow: Sequence[CallRecord]) -> StepFacts:
        dtypes: set[str] = set()
        devices: set[str] = set()
        nonfinite = grads = False
        for call in flow:
            grads = grads or bool(call.grads)
            for tensors in (call.inputs, call.outputs, call.grads):
                for t in tensors:
                    dtypes.add(t.dtype)
                    devices.add(t.device)
                    stats = t.stats
                    if not nonfinite and (stats.get("nan_count") or stats.get("inf_count")):
                        nonfinite = True
        return cls(frozenset(dtypes), frozenset(devices), nonfinite, grads)


@dataclass(frozen=True)
class RunRecords:
    """What the rules of one check read: the run, its checked steps' flows, its modules.

    ``flows`` maps each checked step (ascending) to its calls in flow order. Built from the store
    by :func:`tracer.checks.engine.check_run`, or from flows in memory (one step as it is traced).
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

    @cached_property
    def module_types(self) -> dict[str, str]:
        """Module path -> type name, from the module records, else from the calls."""
        types = {m.path: m.type for m in self.modules}
        for calls in self.flows.values():
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
        found = {}
        for step, flow in self.flows.items():
            depths = [call.depth for call in flow]
            nested = [a < b for a, b in itertools.pairwise(depths)]
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
