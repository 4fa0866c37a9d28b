"""Torch-free records: the public vocabulary shared by the core, the store, plugins and the UI.

Every record is a frozen dataclass holding only plain Python values (str, int, float, bool,
tuples and read-only mappings). The tracing core produces them from live tensors; the store
persists them and hands them back; the TUI and users' own code read them. Nothing here imports
torch, so any part of the project may import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

# Shown text (shapes, literal strings) is tracer.formatting's; importable from here too.
from tracer.formatting import ELLIPSIS as ELLIPSIS
from tracer.formatting import dimension_names as dimension_names
from tracer.formatting import format_shape as format_shape
from tracer.formatting import literal as literal

Role = Literal["input", "output", "grad", "param_grad"]
CallKind = Literal["module", "op"]
RunStatus = Literal["running", "completed", "failed", "interrupted"]

#: Statistics every float tensor gets. Integer tensors get ``numel``, ``mean``, ``min``, ``max``
#: (plus ``zero_frac``); bool tensors get ``numel`` and ``true_frac``; tensors without readable
#: values (sparse, meta, quantized) get ``numel`` only. Plugins may add further keys.
#:
#: ``zero_frac``, ``near_zero_frac`` and ``near_one_frac`` are fractions of the finite values:
#: of ``x == 0``, of ``|x| <= 0.01`` and of ``0.99 <= |x| <= 1.01`` (bounds included; the band
#: is ``tracer.core.stats_layout.NEAR_BAND``, fixed when a run is recorded). The last two tell
#: a bounded activation pinned at its bounds from one spread over its range: near 1 are
#: near_zero + near_one for a saturated sigmoid, near_one for a saturated tanh or hardtanh,
#: near_one times the last dimension for a peaked softmax, near_zero for a dead GELU. Runs
#: recorded before these two existed lack their keys (not recorded, which is not 0). Without
#: any finite value a float tensor gets ``numel``, ``nan_count`` and ``inf_count`` only.
BUILTIN_STATS: tuple[str, ...] = (
    "numel",
    "mean",
    "std",
    "min",
    "max",
    "abs_mean",
    "l2",
    "zero_frac",
    "nan_count",
    "inf_count",
    "near_zero_frac",
    "near_one_frac",
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def frozen_mapping(values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return a read-only copy of ``values`` (an empty mapping for ``None``)."""
    if not values:
        return _EMPTY
    return MappingProxyType(dict(values))


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """What one tensor (or one opaque object) in a call's inputs, outputs or gradients looked like.

    ``slot`` is the path inside the nested structure: ``"0"`` for a plain single value,
    ``"1.0"`` / ``"1.1"`` for ``h`` / ``c`` of an LSTM's ``(out, (h, c))``, dict keys by name
    (``"logits"``), keyword arguments by name (``"attention_mask"``), attribute names for
    dataclasses; for ``param_grad`` records it is the parameter's name (``"weight_ih_l0"``).
    ``type_name`` is ``"Tensor"`` (or the tensor subclass) for tensors; for an object the walker
    does not understand it is that object's class name, with an empty ``shape`` and ``dtype``.
    ``stats`` holds the value statistics (see :data:`BUILTIN_STATS`); NaN and Inf are counted
    and the other statistics are taken over the finite values.
    """

    slot: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    requires_grad: bool = False
    role: Role = "output"
    type_name: str = "Tensor"
    stats: Mapping[str, float] = field(default_factory=lambda: _EMPTY)

    @property
    def is_tensor(self) -> bool:
        """True when this record describes a tensor rather than an opaque object."""
        return self.dtype != ""

    def shape_text(self, names: Mapping[int, str] | None = None) -> str:
        """The shape as :func:`format_shape` writes it; an opaque object's type name."""
        return format_shape(self.shape, names) if self.is_tensor else self.type_name


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One forward call of a module (``kind="module"``) or one captured op (``kind="op"``).

    ``seq`` is the order of the call within its step (0-based, in execution order, pre-order:
    a parent module's call comes before the calls made inside its forward). ``module`` is the
    qualified module path (``""`` is the root); for an op it is the module whose forward ran it.
    ``call_index`` is the nth call of that module (or, for ops, of that op inside that module)
    in the step. ``grads`` holds ``role="grad"`` records (gradient flowing into each output,
    slots matching ``outputs``) and ``role="param_grad"`` records (the module's own parameters'
    gradients after backward, attached to the module's first call of the step).
    ``duration_s`` is host wall time of the call, taken without device synchronisation.
    """

    step: int
    seq: int
    module: str
    type: str
    call_index: int = 0
    kind: CallKind = "module"
    op: str | None = None
    inputs: tuple[TensorRecord, ...] = ()
    outputs: tuple[TensorRecord, ...] = ()
    grads: tuple[TensorRecord, ...] = ()
    duration_s: float | None = None
    depth: int = 0

    @property
    def name(self) -> str:
        """A short label: the op name for ops, the module path (``"<root>"`` for ``""``)."""
        if self.kind == "op":
            return self.op or "op"
        return self.module or "<root>"

    @property
    def tensors(self) -> tuple[TensorRecord, ...]:
        """All records of the call: inputs, outputs, then gradients."""
        return self.inputs + self.outputs + self.grads


@dataclass(frozen=True, slots=True)
class ParamRecord:
    """One parameter (or buffer) registered directly on a module."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    requires_grad: bool
    shared_with: str | None = None  # qualified name of the first owner when tied


@dataclass(frozen=True, slots=True)
class ModuleRecord:
    """Static description of one module of the traced model.

    Parameter counts follow torchinfo's convention that shared or tied parameters are counted
    once: ``params_total`` of a module counts each distinct parameter in its subtree once, and
    ``params_own`` counts only parameters registered directly on it that were not already
    counted on an earlier module (in ``named_modules()`` order).
    """

    path: str
    type: str
    parent: str | None
    depth: int
    params_own: int = 0
    params_total: int = 0
    trainable_own: int = 0
    trainable_total: int = 0
    extra_repr: str = ""
    parameters: tuple[ParamRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One scalar metric (loss, accuracy, learning rate, ...) logged at a training step."""

    step: int
    name: str
    value: float


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run and its provenance, as the store returns it."""

    id: int
    name: str
    pipeline: str | None
    status: RunStatus
    config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    error: str | None = None
    seed: int | None = None
    python_version: str | None = None
    torch_version: str | None = None
    tracer_version: str | None = None
    device: str | None = None
    host: str | None = None
    pid: int | None = None
    git_commit: str | None = None
    command: str | None = None
    started_at: float | None = None  # POSIX seconds
    finished_at: float | None = None
    updated_at: float | None = None  # last write (heartbeat)
    rank: int = 0
    world_size: int = 1
    group_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    notes: tuple[str, ...] = ()
    steps: int = 0  # number of traced steps recorded
    last_metrics: Mapping[str, float] = field(default_factory=lambda: _EMPTY)

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish (or to the last write while running)."""
        end = self.finished_at or self.updated_at
        if self.started_at is None or end is None:
            return None
        return end - self.started_at
