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
from tracer.core.torch_compat import CAN_DISABLE_TORCH_FUNCTION, mode_stack
from tracer.core.walk import walk_inputs, walk_output

_Tensor = torch.Tensor

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

#: Captured ops whose tensor result holds exactly the values of their one tensor input in
#: another arrangement (the same elements, each once): the result's built-in statistics are
#: its input's (see :meth:`tracer.core.step_state.Recorder.add_single_op`). ``view`` to another
#: dtype reads the bytes as other values: the recorder checks that the dtype stayed.
REARRANGING: frozenset[Callable[..., Any]] = frozenset(
    func
    for func, (op, _) in CAPTURED.items()
    if op
    in {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "squeeze", "unsqueeze"}
)

#: Op names the layer records, for documentation and tests.
OP_NAMES: tuple[str, ...] = tuple(sorted({op for op, _ in CAPTURED.values()}))


#: torch.nn classes whose ``forward`` (and the functions it calls in Python) runs none of the
#: recorded ops, in every configuration: their calls run with the op layer's mode set aside
#: (see :func:`set_aside`). Only the exact class counts (a subclass may override ``forward``),
#: and only with its class ``forward`` (tracer.core.wrapping checks both). The list is held to
#: account by tests/core/test_op_free.py, which runs each class in many configurations under a mode
#: that sees every torch function and fails on a recorded op.
OP_FREE_MODULES: frozenset[type[torch.nn.Module]] = frozenset(
    getattr(torch.nn, name)
    for name in [
        "Identity",
        "Linear",
        "Bilinear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "LayerNorm",
        "GroupNorm",
        "LocalResponseNorm",
        "RMSNorm",
        "Embedding",
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "SELU",
        "CELU",
        "GELU",
        "SiLU",
        "Mish",
        "Sigmoid",
        "Tanh",
        "Hardtanh",
        "Hardswish",
        "Hardsigmoid",
        "Softplus",
        "Softsign",
        "Tanhshrink",
        "Softmax",
        "LogSoftmax",
        "Softmin",
        "LogSigmoid",
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "AdaptiveMaxPool1d",
        "AdaptiveMaxPool2d",
        "AdaptiveMaxPool3d",
        "ZeroPad2d",
        "ConstantPad1d",
        "ConstantPad2d",
        "ReflectionPad1d",
        "ReflectionPad2d",
        "ReplicationPad1d",
        "ReplicationPad2d",
        "PixelShuffle",
        "Upsample",
    ]
    if hasattr(torch.nn, name)
)

#: torch.nn classes whose ``forward`` runs none of the recorded ops when called with one plain
#: tensor of this many dimensions (and no other argument), held to account by the same tests:
#: the recurrent layers on a batched input (an unbatched one is unsqueezed and squeezed back;
#: a PackedSequence is indexed).
OP_FREE_WITH_DIMS: dict[type[torch.nn.Module], int] = {
    torch.nn.RNN: 3,
    torch.nn.LSTM: 3,
    torch.nn.GRU: 3,
}

#: Each class of either kind, with what a wrapper's ``op_free`` holds for it: True (op-free
#: in every call) or the number of dimensions its one input must have.
OP_FREE: dict[type[torch.nn.Module], bool | int] = {
    **dict.fromkeys(OP_FREE_MODULES, True),
    **OP_FREE_WITH_DIMS,
}


def op_free_call(free: bool | int, x: torch.Tensor) -> bool:
    """Whether a call of one plain tensor ``x`` to a module whose wrapper's ``op_free`` is
    ``free`` runs no recorded op (the compiled wrapper's record_input asks the same)."""
    return free is True or (type(free) is int and x.dim() == free)


def _set_aside_with(
    stack: tuple[Callable[..., Any], ...] | None,
) -> Callable[[], TorchFunctionMode | None]:
    if stack is None:
        return lambda: None
    length, at, pop, _ = stack

    def set_aside() -> TorchFunctionMode | None:
        """Take the op layer's mode off the top of torch's mode stack and return it (to be put
        back with :func:`put_back`); None where it is not on top (a mode pushed inside a
        forward sits above it: everything stays as it is)."""
        depth = length()
        if depth and type(at(depth - 1)) is OpCapture:
            mode: TorchFunctionMode = pop()
            return mode
        return None

    return set_aside


set_aside = _set_aside_with(mode_stack)
put_back: Callable[[TorchFunctionMode], None] = (
    mode_stack[3] if mode_stack is not None else (lambda mode: None)
)


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
            inputs = walk_inputs(args, kwargs)
            if (
                type(result) is _Tensor
                and len(inputs) == 1
                and type(x := inputs[0][1]) is _Tensor
                and inputs[0][0] == "0"
            ):  # the usual op: one plain tensor in (the first argument), one out
                rec.add_single_op(names, x, result, elapsed, func in REARRANGING)
            else:
                rec.add_op(names[0], names[1], inputs, walk_output(result), elapsed)
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
