"""What the hooks' fast path asks of a plain tensor: its shared metadata, and whether it is the
output the previous call produced, unchanged.

Two implementations of one small interface (``meta``, ``chained``, ``remember``, ``forget``):

- ``tracer.core._probe.Probe`` (C++, ``tracer/core/_probe.cpp``) reads the answers from the C++
  tensor: no
  Python getters, no ``torch.Size`` or ``torch.device`` allocated, the metadata tuple found in a
  C++ table. It is built only when torch is importable at build time (``pip install
  --no-build-isolation``), for that torch version.
- The compiled module also hands the statistics kernel (``tracer.core._speedups``) a plain CPU
  float tensor's address straight from the C++ tensor (:func:`compiled_float_stats`).
- :class:`PyProbe` asks torch's Python getters: the same answers, used when the compiled one is
  missing (the run's notes say so, with the reason).

Neither holds a tensor: ``remember`` keeps a weak reference (Python's, or the C++ tensor's weak
count, which keeps its small header allocated but never its data).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Final, Protocol

import torch

from tracer.core import torch_compat
from tracer.core.positions import REQUIRES_GRAD

_version = torch_compat.tensor_version

# The compiled probe, loaded (or not) by tracer.core.torch_compat, which documents the torch
# internals it reads; module attributes here so that tests can take the Python path.
PROBE_MISSING = torch_compat.PROBE_MISSING
_CompiledProbe: Any = torch_compat.CompiledProbe
_float_stats: Any = torch_compat.compiled_float_stats

#: PyProbe's remembered tensor: (weak reference, version, requires_grad, (metadata, index)).
_REF: Final = 0
_VERSION: Final = 1
_REQUIRES_GRAD: Final = 2
_PAIR: Final = 3


class TensorProbe(Protocol):
    """The interface both probes implement."""

    def meta(self, t: torch.Tensor, /) -> Any:
        """The shared metadata tuple of ``t`` as one output (``make(t)``, cached)."""

    def chained(self, t: torch.Tensor, /) -> tuple[Any, int | None] | None:
        """``(metadata, statistics index)`` if ``t`` is the remembered tensor, unchanged."""

    def remember(self, t: torch.Tensor, meta: Any, index: int | None, /) -> None:
        """Remember ``t`` (its identity, version and ``requires_grad``) with its record:
        ``meta`` is what :meth:`meta` just returned for ``t``, ``index`` its statistics."""

    def forget(self) -> None:
        """Remember nothing."""


class PyProbe:
    """The Python probe: torch's getters, a weak reference and the version counter."""

    __slots__ = ("_last", "meta")

    def __init__(self, make: Callable[[torch.Tensor], Any]) -> None:
        self.meta = make  # the Python way is the probe's meta itself
        # The remembered tensor, indexed by _REF ... _PAIR
        self._last: tuple[Any, int, bool, tuple[Any, int | None]] | None = None

    def chained(self, t: torch.Tensor) -> tuple[Any, int | None] | None:
        last = self._last
        if (
            last is not None
            and last[_REF]() is t
            and last[_VERSION] == _version(t)
            and last[_REQUIRES_GRAD] == t.requires_grad
        ):
            return last[_PAIR]
        return None

    def remember(self, t: torch.Tensor, meta: Any, index: int | None) -> None:
        try:
            # meta's requires_grad was read a moment ago by make(t)
            self._last = (weakref.ref(t), _version(t), meta[REQUIRES_GRAD], (meta, index))
        except RuntimeError:  # an inference tensor: no version counter to prove it unchanged
            self._last = None

    def forget(self) -> None:
        self._last = None


def new_probe(make: Callable[[torch.Tensor], Any]) -> TensorProbe:
    """The compiled probe when it was built for this torch, else :class:`PyProbe`."""
    if _CompiledProbe is not None:
        probe: TensorProbe = _CompiledProbe(make)
        return probe
    return PyProbe(make)


def probe_available() -> bool:
    """Whether the compiled probe loaded."""
    return _CompiledProbe is not None


def compiled_float_stats() -> Callable[[torch.Tensor], tuple[float, ...] | None] | None:
    """``tracer.core._probe.float_stats`` where the compiled probe loaded: the statistics kernel's
    tuple for a plain CPU float32/float64 tensor whose elements fill one block of memory (in
    any order), read through its C++ data pointer, big ones on torch's threads (None for any
    other tensor, and always None if ``tracer.core._speedups`` is missing)."""
    return _float_stats if _CompiledProbe is not None else None
