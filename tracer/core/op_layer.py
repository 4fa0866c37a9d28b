"""The opt-in op layer: functional shape changes that are not modules, recorded as ``kind="op"``.

A :class:`torch.overrides.TorchFunctionMode` is pushed only while a traced module's forward
runs (the outermost one pushes it, and pops it when it returns), so ops in the training loop or
in the loss are not recorded and untraced steps pay nothing. Each captured op is attributed to
the innermost module whose forward is running. The tracer's own statistics code runs with
torch functions disabled (see tracer.core.wrapping), so it is never captured itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from tracer.core.step_state import Recorder
from tracer.core.torch_compat import CAN_DISABLE_TORCH_FUNCTION
from tracer.core.walk import walk_inputs, walk_output

#: Tensor methods and torch functions the op layer records, by attribute name.
_RESHAPES = "reshape flatten unflatten permute transpose squeeze unsqueeze split chunk"
_TENSOR_METHODS = f"view __getitem__ {_RESHAPES}"
_FUNCTIONS = f"cat concat concatenate stack {_RESHAPES}"
#: Recorded op names that differ from the attribute name.
_OP_NAMES = {"__getitem__": "getitem", "concat": "cat", "concatenate": "cat"}


def _captured() -> dict[Callable[..., Any], tuple[str, str]]:
    """The functions recorded by the op layer: ``func -> (op name, qualified name)``."""
    table: dict[Callable[..., Any], tuple[str, str]] = {}
    for owner, prefix, names in (
        (torch.Tensor, "Tensor", _TENSOR_METHODS),
        (torch, "torch", _FUNCTIONS),
    ):
        for attr in names.split():
            func = getattr(owner, attr, None)
            if func is not None:
                table[func] = (_OP_NAMES.get(attr, attr), f"{prefix}.{attr}")
    return table


CAPTURED = _captured()
_captured_get = CAPTURED.get

#: Op names the layer records, for documentation and tests.
OP_NAMES: tuple[str, ...] = tuple(sorted({op for op, _ in CAPTURED.values()}))


class OpCapture(TorchFunctionMode):
    """Records captured ops into a recorder while a traced forward runs."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        # Every torch function and tensor method of the forward comes through here (attribute
        # reads like ``.shape`` included): the uncaptured ones leave at once.
        names = _captured_get(func)
        if names is None:
            return func(*args, **kwargs) if kwargs else func(*args)
        kwargs = kwargs or {}
        rec = self.recorder
        if not rec.stack:
            return func(*args, **kwargs)
        start = time.perf_counter()
        result = func(*args, **kwargs)
        elapsed = time.perf_counter() - start
        try:
            # Inside __torch_function__ the mode is off, so this bookkeeping is not captured.
            rec.add_op(names[0], names[1], walk_inputs(args, kwargs), walk_output(result), elapsed)
        except Exception:
            rec.internal_errors += 1
        return result


class OpLayer:
    """Pushes and pops the :class:`OpCapture` mode around the outermost traced forward."""

    def __init__(self, recorder: Recorder) -> None:
        if not CAN_DISABLE_TORCH_FUNCTION:  # the tracer's own torch calls would be recorded
            raise RuntimeError(
                f"ops=True needs torch._C.DisableTorchFunction, which torch {torch.__version__} "
                "lacks: trace without ops=True"
            )
        self.recorder = recorder
        self.mode = OpCapture(recorder)
        recorder.on_outermost = self.switch

    def switch(self, on: bool) -> None:
        """Push the mode (``on``) or pop it; idempotent."""
        if on and not self.recorder.ops_on:
            self.mode.__enter__()
            self.recorder.ops_on = True
        elif not on and self.recorder.ops_on:
            self.recorder.ops_on = False
            self.mode.__exit__(None, None, None)
