"""Modules whose calls run with the op layer's mode set aside: the list holds, and records match."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import tracer
from tracer.core import op_layer
from tracer.core.op_layer import CAPTURED, OP_FREE_MODULES, OP_FREE_WITH_DIMS, OpLayer


class _Seen(TorchFunctionMode):
    """Sees every torch function a block runs in Python."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        names = CAPTURED.get(func)
        if names is not None:
            self.seen.add(names[1])
        return func(*args, **(kwargs or {}))


def _x(*shape: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(*shape)


# Every class of the list, in the configurations that change which code its forward runs.
_CASES: dict[str, list[tuple[Callable[[], nn.Module], Callable[[], Any]]]] = {
    "Identity": [(nn.Identity, _x(2, 3))],
    "Linear": [
        (lambda: nn.Linear(4, 3), _x(2, 4)),
        (lambda: nn.Linear(4, 3, bias=False), _x(5, 2, 4)),
        (lambda: nn.Linear(4, 3), _x(4)),
    ],
    "Bilinear": [(lambda: nn.Bilinear(3, 4, 2), lambda: (torch.randn(2, 3), torch.randn(2, 4)))],
    "Conv1d": [
        (lambda: nn.Conv1d(2, 3, 3), _x(1, 2, 8)),
        (lambda: nn.Conv1d(2, 3, 3, padding="same", padding_mode="circular"), _x(1, 2, 8)),
        (lambda: nn.Conv1d(2, 2, 3, groups=2, padding=1, padding_mode="reflect"), _x(2, 8)),
    ],
    "Conv2d": [
        (lambda: nn.Conv2d(2, 3, 3), _x(1, 2, 6, 6)),
        (
            lambda: nn.Conv2d(
                2, 4, 3, stride=2, padding=1, dilation=1, groups=2, padding_mode="replicate"
            ),
            _x(1, 2, 7, 7),
        ),
        (lambda: nn.Conv2d(2, 3, 3, padding="same", padding_mode="zeros", bias=False), _x(2, 6, 6)),
    ],
    "Conv3d": [
        (lambda: nn.Conv3d(1, 2, 2), _x(1, 1, 4, 4, 4)),
        (lambda: nn.Conv3d(1, 2, 3, padding=1, padding_mode="circular"), _x(1, 1, 4, 4, 4)),
    ],
    "ConvTranspose1d": [
        (lambda: nn.ConvTranspose1d(2, 3, 3, stride=2), _x(1, 2, 5)),
        (lambda: nn.ConvTranspose1d(2, 3, 3, stride=2, output_padding=1), _x(2, 5)),
    ],
    "ConvTranspose2d": [(lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), _x(1, 2, 4, 4))],
    "ConvTranspose3d": [(lambda: nn.ConvTranspose3d(1, 2, 2), _x(1, 1, 3, 3, 3))],
    "BatchNorm1d": [
        (lambda: nn.BatchNorm1d(3), _x(4, 3)),
        (lambda: nn.BatchNorm1d(3, affine=False, track_running_stats=False), _x(4, 3, 5)),
        (lambda: nn.BatchNorm1d(3, momentum=None), _x(4, 3)),
    ],
    "BatchNorm2d": [
        (lambda: nn.BatchNorm2d(3), _x(2, 3, 4, 4)),
        (lambda: nn.BatchNorm2d(3, track_running_stats=False), _x(2, 3, 4, 4)),
    ],
    "BatchNorm3d": [(lambda: nn.BatchNorm3d(2), _x(2, 2, 2, 2, 2))],
    "LayerNorm": [
        (lambda: nn.LayerNorm(4), _x(2, 4)),
        (lambda: nn.LayerNorm([3, 4], elementwise_affine=False), _x(2, 3, 4)),
        (lambda: nn.LayerNorm(4, bias=False), _x(4)),
    ],
    "GroupNorm": [
        (lambda: nn.GroupNorm(2, 4), _x(2, 4, 3)),
        (lambda: nn.GroupNorm(1, 4, affine=False), _x(2, 4, 3, 3)),
    ],
    "LocalResponseNorm": [
        (lambda: nn.LocalResponseNorm(2), _x(2, 4, 5)),
        (lambda: nn.LocalResponseNorm(3), _x(1, 4, 3, 3)),
        (lambda: nn.LocalResponseNorm(2), _x(1, 4, 2, 3, 3)),
    ],
    "RMSNorm": [
        (lambda: nn.RMSNorm(4), _x(2, 4)),
        (lambda: nn.RMSNorm([3, 4], eps=1e-5, elementwise_affine=False), _x(2, 3, 4)),
    ],
    "Embedding": [
        (lambda: nn.Embedding(10, 3), lambda: torch.tensor([[1, 2], [3, 9]])),
        (lambda: nn.Embedding(10, 3, padding_idx=0, max_norm=1.0), lambda: torch.tensor([0, 4, 4])),
        (
            lambda: nn.Embedding(10, 3, scale_grad_by_freq=True, sparse=True),
            lambda: torch.tensor([1, 1, 2]),
        ),
    ],
    "Dropout": [(nn.Dropout, _x(3, 4)), (lambda: nn.Dropout(0.5, inplace=True), _x(3, 4))],
    "Dropout1d": [(nn.Dropout1d, _x(2, 3, 4)), (nn.Dropout1d, _x(3, 4))],
    "Dropout2d": [(nn.Dropout2d, _x(2, 3, 4, 4)), (nn.Dropout2d, _x(3, 4, 4))],
    "Dropout3d": [(nn.Dropout3d, _x(1, 2, 2, 2, 2)), (nn.Dropout3d, _x(2, 2, 2, 2))],
    "AlphaDropout": [(nn.AlphaDropout, _x(3, 4))],
    "Softmax": [
        (lambda: nn.Softmax(dim=-1), _x(2, 3)),
        (nn.Softmax, _x(2, 3)),
        (nn.Softmax, _x(3)),
    ],
    "LogSoftmax": [(lambda: nn.LogSoftmax(dim=1), _x(2, 3)), (nn.LogSoftmax, _x(2, 3, 4))],
    "Softmin": [(lambda: nn.Softmin(dim=1), _x(2, 3))],
    "MaxPool1d": [
        (lambda: nn.MaxPool1d(2), _x(1, 2, 8)),
        (lambda: nn.MaxPool1d(3, stride=2, padding=1, dilation=1, ceil_mode=True), _x(2, 9)),
    ],
    "MaxPool2d": [
        (lambda: nn.MaxPool2d(2), _x(1, 2, 4, 4)),
        (lambda: nn.MaxPool2d(3, 2, 1, return_indices=True), _x(1, 2, 6, 6)),
    ],
    "MaxPool3d": [(lambda: nn.MaxPool3d(2), _x(1, 1, 4, 4, 4))],
    "AvgPool1d": [(lambda: nn.AvgPool1d(2), _x(1, 2, 8))],
    "AvgPool2d": [
        (
            lambda: nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False, divisor_override=3),
            _x(1, 2, 5, 5),
        )
    ],
    "AvgPool3d": [(lambda: nn.AvgPool3d(2), _x(1, 1, 4, 4, 4))],
    "AdaptiveAvgPool1d": [(lambda: nn.AdaptiveAvgPool1d(3), _x(1, 2, 8))],
    "AdaptiveAvgPool2d": [
        (lambda: nn.AdaptiveAvgPool2d((1, 1)), _x(1, 2, 5, 5)),
        (lambda: nn.AdaptiveAvgPool2d((None, 2)), _x(2, 5, 5)),
    ],
    "AdaptiveAvgPool3d": [(lambda: nn.AdaptiveAvgPool3d(1), _x(1, 1, 4, 4, 4))],
    "AdaptiveMaxPool1d": [(lambda: nn.AdaptiveMaxPool1d(3, return_indices=True), _x(1, 2, 8))],
    "AdaptiveMaxPool2d": [(lambda: nn.AdaptiveMaxPool2d(2), _x(1, 2, 5, 5))],
    "AdaptiveMaxPool3d": [(lambda: nn.AdaptiveMaxPool3d(2), _x(1, 1, 4, 4, 4))],
    "ZeroPad2d": [
        (lambda: nn.ZeroPad2d(1), _x(1, 2, 3, 3)),
        (lambda: nn.ZeroPad2d((1, 0, 2, 0)), _x(2, 3, 3)),
    ],
    "ConstantPad1d": [(lambda: nn.ConstantPad1d(2, 3.5), _x(1, 2, 4))],
    "ConstantPad2d": [(lambda: nn.ConstantPad2d((1, 2, 0, 1), 1.0), _x(1, 2, 3, 3))],
    "ReflectionPad1d": [(lambda: nn.ReflectionPad1d(2), _x(1, 2, 4))],
    "ReflectionPad2d": [(lambda: nn.ReflectionPad2d(1), _x(1, 2, 3, 3))],
    "ReplicationPad1d": [(lambda: nn.ReplicationPad1d(2), _x(1, 2, 4))],
    "ReplicationPad2d": [(lambda: nn.ReplicationPad2d(1), _x(1, 2, 3, 3))],
    "PixelShuffle": [(lambda: nn.PixelShuffle(2), _x(1, 8, 2, 2))],
    "Upsample": [
        (lambda: nn.Upsample(scale_factor=2), _x(1, 2, 3, 3)),
        (lambda: nn.Upsample(size=(5, 5), mode="bilinear", align_corners=True), _x(1, 2, 3, 3)),
        (lambda: nn.Upsample(scale_factor=2, mode="nearest-exact"), _x(1, 2, 3)),
        (
            lambda: nn.Upsample(scale_factor=1.5, mode="bicubic", recompute_scale_factor=True),
            _x(1, 2, 4, 4),
        ),
        (lambda: nn.Upsample(scale_factor=2, mode="trilinear"), _x(1, 1, 2, 2, 2)),
        (lambda: nn.Upsample(scale_factor=2, mode="area"), _x(1, 2, 3, 3)),
    ],
}
_ACTIVATIONS = [
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
    "LogSigmoid",
]
for _name in _ACTIVATIONS:
    _cls = getattr(nn, _name)
    _CASES[_name] = [(_cls, _x(2, 3)), (_cls, _x(2, 3, 4, 4))]
_CASES["ReLU"].append((lambda: nn.ReLU(inplace=True), _x(2, 3)))
_CASES["GELU"].append((lambda: nn.GELU(approximate="tanh"), _x(2, 3)))
_CASES["PReLU"].append((lambda: nn.PReLU(3), _x(2, 3, 4)))
_CASES["LeakyReLU"].append((lambda: nn.LeakyReLU(0.2, inplace=True), _x(2, 3)))
_CASES["Softplus"].append((lambda: nn.Softplus(beta=2, threshold=1), _x(2, 3)))
_CASES["ELU"].append((lambda: nn.ELU(inplace=True), _x(2, 3)))
_CASES["Hardtanh"].append((lambda: nn.Hardtanh(-2, 2, inplace=True), _x(2, 3)))
_CASES["SiLU"].append((lambda: nn.SiLU(inplace=True), _x(2, 3)))


def test_every_op_free_class_has_cases() -> None:
    assert {cls.__name__ for cls in OP_FREE_MODULES} == set(_CASES)


@pytest.mark.parametrize("name", sorted(_CASES))
def test_op_free_class_runs_no_recorded_op(name: str) -> None:
    # Train and eval, with and without gradients: the forward and what it calls in Python run
    # none of the ops the op layer records (else setting the mode aside would lose them).
    for make_module, make_input in _CASES[name]:
        module = make_module()
        for training, grad in ((True, True), (False, False), (True, False), (False, True)):
            module.train(training)
            x = make_input()
            args = x if isinstance(x, tuple) else (x,)
            with torch.set_grad_enabled(grad), _Seen() as mode:
                module(*args)
            assert not mode.seen, f"{module!r} ran {sorted(mode.seen)}: not op-free"


def _recurrent(cls: type[nn.Module]) -> list[nn.Module]:
    """A recurrent class in the configurations that change which code its forward runs."""
    kinds: list[dict[str, Any]] = [
        {},
        {"batch_first": True},
        {"bidirectional": True, "num_layers": 2, "dropout": 0.1},
        {"bias": False, "batch_first": True, "bidirectional": True},
    ]
    if cls is nn.LSTM:
        kinds.append({"proj_size": 2, "num_layers": 2})
    if cls is nn.RNN:
        kinds.append({"nonlinearity": "relu"})
    return [cls(4, 3, **kind) for kind in kinds]


@pytest.mark.parametrize("cls", sorted(OP_FREE_WITH_DIMS, key=lambda c: c.__name__))
def test_op_free_with_dims_holds_for_those_dims_only(cls: type[nn.Module]) -> None:
    # Called with one tensor of the listed dimensions (a batch), the recurrent layers run no
    # recorded op; with another (unbatched) they do, so the condition is needed.
    dims = OP_FREE_WITH_DIMS[cls]
    assert dims == 3
    for module in _recurrent(cls):
        for training, grad in ((True, True), (False, False), (True, False), (False, True)):
            module.train(training)
            with torch.set_grad_enabled(grad), _Seen() as batched:
                module(torch.randn(2, 5, 4))
            assert not batched.seen, f"{module!r} ran {sorted(batched.seen)}: not op-free"
            with torch.set_grad_enabled(grad), _Seen() as unbatched:
                module(torch.randn(5, 4))
            assert unbatched.seen


def _switched_on(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every time the op layer's mode is pushed (True) or popped (False)."""
    switched: list[bool] = []
    switch = OpLayer.switch

    def spy(self: OpLayer, on: bool) -> None:
        if on != self.recorder.ops_on:
            switched.append(on)
        switch(self, on)

    monkeypatch.setattr(OpLayer, "switch", spy)
    return switched


@pytest.mark.usefixtures("probe_path")
@pytest.mark.parametrize(
    ("make", "x", "ops", "pushed"),
    [
        (lambda: nn.Linear(4, 3), torch.randn(2, 4), [], False),
        (lambda: nn.GRU(4, 3), torch.randn(2, 5, 4), [], False),
        (lambda: nn.LSTM(4, 3), torch.randn(5, 4), ["unsqueeze", *["squeeze"] * 3], True),
        (lambda: nn.Sequential(nn.Linear(4, 4)), torch.randn(2, 4), [], True),
        (
            lambda: nn.Sequential(nn.GRU(4, 3, batch_first=True)),
            torch.randn(5, 4),
            ["unsqueeze", "squeeze", "squeeze"],
            True,
        ),
    ],
)
def test_an_op_free_outermost_call_leaves_the_op_layer_off(
    make: Callable[[], nn.Module],
    x: torch.Tensor,
    ops: list[str],
    pushed: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An outermost module whose call runs no recorded op (an op-free class, a recurrent layer
    # on a batch) does not push the op layer's mode at all: nothing in it could be recorded.
    # Anything else pushes it, and an unbatched recurrent layer's unsqueeze and squeezes are
    # recorded, outermost or inside.
    switched = _switched_on(monkeypatch)
    model = make()
    summary = tracer.summary(model, x, echo=False)
    assert [c.op for c in summary.calls if c.kind == "op"] == ops
    assert switched == ([True, False] if pushed else [])


@pytest.mark.parametrize(
    ("module", "x"),
    [
        (nn.Flatten(), torch.randn(2, 3, 4)),
        (nn.Unflatten(1, (2, 2)), torch.randn(3, 4)),
        (nn.MultiheadAttention(4, 2, batch_first=True), torch.randn(2, 3, 4)),
        (nn.LSTM(4, 3), torch.randn(5, 4)),  # unbatched: unsqueeze
        (nn.InstanceNorm1d(3), torch.randn(3, 5)),  # unbatched: unsqueeze, squeeze
    ],
)
def test_modules_that_run_recorded_ops_are_seen_and_kept_off_the_list(
    module: nn.Module, x: torch.Tensor
) -> None:
    # The check above can fail: these run recorded ops in Python, and are not on the list.
    args = (x, x, x) if isinstance(module, nn.MultiheadAttention) else (x,)
    with _Seen() as mode:
        module(*args)
    assert mode.seen and type(module) not in OP_FREE_MODULES


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.act = nn.ReLU()
        self.norm = nn.LayerNorm(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.fc(x.reshape(-1, 6)))
        return self.norm(y).view(2, -1)[:, -1]


def _flows(model: nn.Module, x: torch.Tensor) -> list[tuple[Any, ...]]:
    summary = tracer.summary(model, x, echo=False)
    return [
        (c.seq, c.kind, c.module, c.op, c.depth, c.call_index,
         [(r.slot, r.shape, r.dtype, dict(r.stats)) for r in (*c.inputs, *c.outputs)])
        for c in summary.calls
    ]  # fmt: skip


def test_records_are_the_same_with_the_mode_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_Block(), nn.Flatten(0), nn.Unflatten(0, (1, -1)), nn.Sigmoid())
    x = torch.randn(2, 6)
    fast = _flows(model, x)
    ops = [entry for entry in fast if entry[1] == "op"]
    assert [entry[3] for entry in ops] == ["reshape", "view", "getitem", "flatten", "unflatten"]
    monkeypatch.setattr("tracer.core.wrapping.set_aside", lambda: None)
    assert _flows(model, x) == fast


def test_a_forward_set_on_the_instance_keeps_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # The promise is about the class's forward: a Linear whose forward the user replaced on the
    # instance has its ops recorded.
    layer = nn.Linear(4, 4)
    original = layer.forward
    layer.forward = lambda x: original(x.view(-1, 4)).reshape(2, 2, 2)  # type: ignore[method-assign]
    model = nn.Sequential(nn.ReLU(), layer)
    ops = [
        c.op for c in tracer.summary(model, torch.randn(2, 4), echo=False).calls if c.kind == "op"
    ]
    assert ops == ["view", "reshape"]


def test_a_mode_pushed_inside_a_forward_stays_and_sees_the_leaf() -> None:
    # Where the op layer's mode is not on top of torch's mode stack (a mode the model pushed
    # itself sits above it), nothing is set aside: that mode still sees the leaf's functions.
    seen = _Everything()

    class WithMode(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with seen:
                return self.fc(x).view(-1)

    summary = tracer.summary(WithMode(), torch.randn(2, 3), echo=False)
    assert torch.nn.functional.linear in seen.funcs
    assert [c.op for c in summary.calls if c.kind == "op"] == ["view"]


class _Everything(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.funcs: list[Callable[..., Any]] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.funcs.append(func)
        return func(*args, **(kwargs or {}))


def test_set_aside_leaves_other_modes_alone() -> None:
    assert op_layer.set_aside() is None  # nothing on the stack
    x = torch.ones(1)
    with _Everything() as mode:
        assert op_layer.set_aside() is None  # not the op layer's: stays
        torch.relu(x)
    assert [func.__name__ for func in mode.funcs] == ["relu"]
