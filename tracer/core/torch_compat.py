"""Every private torch API the tracing core relies on, in one place, each with why and a fallback.

A torch upgrade may remove or change any of these without notice; ``tests/core/
test_torch_compat.py`` checks each one (it exists and behaves as relied on) and names the API and
what would break. Where a safe fallback exists the module still imports without the API and the
tracer loses only what the fallback says. Call sites import from here, never from ``torch._C``.

The compiled probe (``tracer/core/_probe.cpp``) uses torch's C++ internals directly and stays in
C++: ``THPVariableClass`` (an exact ``torch.Tensor`` is recognised by its type) and
``THPVariable_Unpack`` (the C++ tensor behind it), then ``TensorImpl``'s sizes, dtype, device,
``requires_grad``, ``is_python_dispatch``, ``is_inference``, ``version_counter`` and weak
intrusive pointers; for the statistics request also ``is_view`` and ``_base`` (a view's root,
as ``Tensor._base`` reads it), ``THPVariable_Wrap`` (that root as a Python tensor) and
``at::impl::torch_function_mode_enabled`` (a tensor seen while a torch function mode is on
goes to the Python path); for the traced forward's compiled call also ``c10::GradMode``
(``torch.is_grad_enabled()``'s C++ side). It is built against one torch's headers and refuses to
load under another torch version, so an upgrade makes it fail to import (never misread memory):
the core then uses :class:`tracer.core.probe.PyProbe` and the Python traced forward, and the
run's notes say why. :data:`PROBE_LOADED` says which.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

_C: Any = torch._C  # the private namespace, read here only

#: ``torch._C.DisableTorchFunction``: turns every torch function mode off for a block. The op
#: layer's own bookkeeping (statistics, metadata) runs under it so that it is never recorded as
#: the model's ops. No fallback: without it the op layer refuses to start (see
#: :data:`CAN_DISABLE_TORCH_FUNCTION`).
DisableTorchFunction: Callable[[], AbstractContextManager[Any]] | None = getattr(
    _C, "DisableTorchFunction", None
)
CAN_DISABLE_TORCH_FUNCTION = DisableTorchFunction is not None

#: ``torch._C._EnableTorchFunction``: turns torch function modes back on inside a
#: :data:`DisableTorchFunction` block, so that a module's own forward is seen by the op layer while
#: the traced wrapper's bookkeeping around it is not. Fallback (None): such calls take the generic
#: path, which runs the forward outside any disabled block (slower, same records).
EnableTorchFunction: Callable[[], AbstractContextManager[Any]] | None = getattr(
    _C, "_EnableTorchFunction", None
)

#: ``torch._C._len_torch_function_stack``, ``_get_function_stack_at``,
#: ``_pop_torch_function_stack`` and ``_push_on_torch_function_stack``: the torch function mode
#: stack (what ``torch.overrides`` itself uses to pop a mode for a while). The op layer takes its
#: own mode off the top of the stack while a module that runs no recorded op in Python executes
#: (a ``Linear``, a ``ReLU``): every torch function of such a forward would otherwise pass
#: through the mode's Python handler for nothing. Fallback (None): the mode stays on for them
#: (slower, same records).
_MODE_STACK_APIS = (
    "_len_torch_function_stack",
    "_get_function_stack_at",
    "_pop_torch_function_stack",
    "_push_on_torch_function_stack",
)
mode_stack: tuple[Callable[..., Any], ...] | None = (
    tuple(getattr(_C, name) for name in _MODE_STACK_APIS)
    if all(hasattr(_C, name) for name in _MODE_STACK_APIS)
    else None
)

#: ``nn.Module._replicate_for_data_parallel``: what ``nn.DataParallel`` (``torch.nn.parallel.
#: replicate``) calls on every module to make a replica (a ``__dict__`` copy). A traced module
#: sets an instance attribute of this name so that replicas get their own forward back instead
#: of the traced wrapper. No fallback: if torch stops calling it, replicas would run the traced
#: original's forward (the test names this).
REPLICATE_ATTR = "_replicate_for_data_parallel"


def replicate_for_data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """A replica of ``module`` made as its class makes one for ``nn.DataParallel``."""
    replica: torch.nn.Module = getattr(type(module), REPLICATE_ATTR)(module)
    return replica


def _no_base(t: torch.Tensor) -> None:
    return None


def _never_zero(t: torch.Tensor) -> bool:
    return False


def _no_version(t: torch.Tensor) -> int:
    raise RuntimeError("this torch has no tensor version counter")


#: ``Tensor._base``: the tensor a view was made from (None for a non-view). Statistics of a
#: contiguous view are shared with its root's (one reduction for ``x`` and ``x.view(-1, n)``).
#: Fallback: None for every tensor, so each view is reduced on its own (same values, more work).
tensor_base: Callable[[torch.Tensor], torch.Tensor | None] = (
    operator.attrgetter("_base") if hasattr(torch.Tensor, "_base") else _no_base
)

#: ``Tensor._is_zerotensor()``: a ZeroTensor (all zeros, no memory behind it, made by autograd
#: for some zero gradients) whose data pointer must not be read. Fallback: never a ZeroTensor
#: (a torch without the method is taken to have no ZeroTensors).
is_zerotensor: Callable[[torch.Tensor], bool] = getattr(torch.Tensor, "_is_zerotensor", _never_zero)

#: ``Tensor._version``: the version counter, bumped by every in-place change. A tensor seen
#: before at the same version has the same statistics (deduplication, chain identity); an
#: inference tensor has none (``RuntimeError``). Fallback: raises ``RuntimeError`` for every
#: tensor, which callers already treat as "cannot prove unchanged" (no deduplication).
tensor_version: Callable[[torch.Tensor], int] = (
    operator.attrgetter("_version") if hasattr(torch.Tensor, "_version") else _no_version
)

#: Why the compiled probe did not load ("" when it did).
PROBE_MISSING = ""
CompiledProbe: Any = None
compiled_float_stats: Any = None
try:
    from tracer.core._probe import Probe as _Probe
    from tracer.core._probe import float_stats as _probe_float_stats
except ImportError as exc:  # built in isolation (no torch at build time), or for another torch
    PROBE_MISSING = f"{type(exc).__name__}: {exc}"
else:
    CompiledProbe = _Probe
    compiled_float_stats = _probe_float_stats

#: Whether the compiled probe (torch's C++ internals, see above) loaded for this torch.
PROBE_LOADED = CompiledProbe is not None

#: The private APIs above by name, with what breaks without them (documentation and tests).
PRIVATE_APIS: dict[str, str] = {
    "torch._C.DisableTorchFunction": "the op layer would record the tracer's own torch calls",
    "torch._C._EnableTorchFunction": "one-tensor calls under the op layer take the generic path",
    "nn.Module._replicate_for_data_parallel": "DataParallel replicas would run traced forwards",
    "torch._C torch function mode stack": "op-free modules run under the op layer's mode",
    "Tensor._base": "contiguous views would be reduced again instead of sharing statistics",
    "Tensor._is_zerotensor": "a ZeroTensor's missing memory could be read by the kernel",
    "Tensor._version": "no deduplication or chain identity (every tensor reduced again)",
    "THPVariable (C++ probe)": "the compiled probe would not load (PyProbe, slower)",
}
