"""Each private torch API in tracer.core.torch_compat still exists and behaves as relied on.

A failure here after a torch upgrade names the API and what breaks without it; the fix belongs
in tracer/core/torch_compat.py (a new spelling, or the fallback).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from core.models import mlp
from torch import nn
from torch.overrides import TorchFunctionMode

import tracer
import tracer.core.probe
import tracer.core.wrapping
from tracer.core import positions, step_state, torch_compat


class _Seen(TorchFunctionMode):
    """Remembers the torch functions it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Callable[..., Any]] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.seen.append(func)
        return func(*args, **(kwargs or {}))


def _broken(api: str, why: str) -> str:
    return f"torch {torch.__version__}: {api} {why}; without it {torch_compat.PRIVATE_APIS[api]}"


def test_torch_compat_disable_torch_function_hides_calls_from_a_mode() -> None:
    api = "torch._C.DisableTorchFunction"
    assert torch_compat.DisableTorchFunction is not None, _broken(api, "is gone")
    x = torch.ones(2, 3)
    with _Seen() as mode:
        with torch_compat.DisableTorchFunction():
            torch.cat([x, x])
        hidden = list(mode.seen)
        torch.cat([x, x])
    assert hidden == [], _broken(api, f"no longer hides torch calls from a mode ({hidden})")
    assert torch.cat in mode.seen, f"torch {torch.__version__}: TorchFunctionMode saw no torch.cat"


def test_torch_compat_enable_torch_function_shows_calls_again_inside_disable() -> None:
    api = "torch._C._EnableTorchFunction"
    assert torch_compat.EnableTorchFunction is not None, _broken(api, "is gone")
    assert torch_compat.DisableTorchFunction is not None
    x = torch.ones(2, 3)
    disable, enable = torch_compat.DisableTorchFunction, torch_compat.EnableTorchFunction
    with _Seen() as mode, disable(), enable():
        x.view(-1)
    assert torch.Tensor.view in mode.seen, _broken(api, "no longer turns torch functions back on")


def test_torch_compat_replicate_for_data_parallel_is_what_data_parallel_calls() -> None:
    api = "nn.Module._replicate_for_data_parallel"
    assert hasattr(nn.Module, torch_compat.REPLICATE_ATTR), _broken(api, "is gone")
    from torch.nn.parallel import replicate

    source = inspect.getsource(replicate)
    assert f".{torch_compat.REPLICATE_ATTR}()" in source, _broken(
        api, "is no longer called by torch.nn.parallel.replicate"
    )
    model = nn.Linear(2, 2)
    model.__dict__["marker"] = object()
    replica = torch_compat.replicate_for_data_parallel(model)
    assert replica is not model and type(replica) is nn.Linear, _broken(api, "made no replica")
    # The traced forward's instance attributes reach replicas this way (and are taken off).
    assert replica.__dict__.get("marker") is model.__dict__["marker"], _broken(
        api, "no longer copies the module's __dict__"
    )


def test_torch_compat_base_is_the_root_of_a_view() -> None:
    api = "Tensor._base"
    assert hasattr(torch.Tensor, "_base"), _broken(api, "is gone")
    root = torch.randn(4, 6)
    assert torch_compat.tensor_base(root) is None, _broken(api, "is set on a non-view")
    view = root.view(-1).view(6, 4)
    assert torch_compat.tensor_base(view) is root, _broken(api, "is not the view's root")


def test_torch_compat_is_zerotensor_tells_a_zero_tensor() -> None:
    api = "Tensor._is_zerotensor"
    assert hasattr(torch.Tensor, "_is_zerotensor"), _broken(api, "is gone")
    assert torch_compat.is_zerotensor(torch.zeros(3)) is False, _broken(api, "is True for zeros")
    zero = torch._efficientzerotensor((2, 3))  # what autograd makes for some zero gradients
    assert torch_compat.is_zerotensor(zero) is True, _broken(api, "is False for a ZeroTensor")


def test_torch_compat_version_counts_in_place_changes() -> None:
    api = "Tensor._version"
    assert hasattr(torch.Tensor, "_version"), _broken(api, "is gone")
    x = torch.zeros(3)
    before = torch_compat.tensor_version(x)
    assert torch_compat.tensor_version(x.view(3)) == before, _broken(api, "differs for a view")
    x.add_(1)
    assert torch_compat.tensor_version(x) > before, _broken(api, "missed an in-place change")
    with torch.inference_mode():
        inference = torch.zeros(3)
    with pytest.raises(RuntimeError):  # the callers' "cannot prove unchanged"
        torch_compat.tensor_version(inference)


def test_torch_compat_compiled_probe_loads_for_this_torch() -> None:
    api = "THPVariable (C++ probe)"
    built = list(Path(tracer.core.probe.__file__).parent.glob("_probe.*.so"))
    if not built:
        pytest.skip("tracer.core._probe was not built in this install")
    assert torch_compat.PROBE_LOADED, _broken(
        api,
        f"and TensorImpl: the built probe did not load ({torch_compat.PROBE_MISSING}); rebuild "
        "with pip install --no-build-isolation -e .",
    )
    probe = torch_compat.CompiledProbe(step_state.single_meta)
    x = torch.randn(3, 4, requires_grad=True)
    assert probe.meta(x) == step_state.single_meta(x), _broken(api, "misreads a tensor")


def test_torch_compat_op_layer_refuses_without_disable_torch_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tracer.core.op_layer

    monkeypatch.setattr(tracer.core.op_layer, "CAN_DISABLE_TORCH_FUNCTION", False)
    with pytest.raises(RuntimeError, match=r"ops=True needs torch\._C\.DisableTorchFunction"):
        tracer.trace(mlp(2), ops=True)


def test_torch_compat_names_every_private_api_it_exports() -> None:
    assert set(torch_compat.PRIVATE_APIS) == {
        "torch._C.DisableTorchFunction",
        "torch._C._EnableTorchFunction",
        "nn.Module._replicate_for_data_parallel",
        "Tensor._base",
        "Tensor._is_zerotensor",
        "Tensor._version",
        "THPVariable (C++ probe)",
        "torch._C torch function mode stack",
    }


def test_torch_compat_mode_stack_pops_and_pushes_the_top_mode() -> None:
    api = "torch._C torch function mode stack"
    assert torch_compat.mode_stack is not None, _broken(api, "is gone")
    length, at, pop, push = torch_compat.mode_stack
    x = torch.ones(2)
    with _Seen() as mode:
        depth = length()
        assert depth >= 1 and at(depth - 1) is mode, _broken(api, "does not show the top mode")
        popped = pop()
        try:
            assert popped is mode and length() == depth - 1, _broken(api, "pops another mode")
            torch.relu(x)
        finally:
            push(popped)
        assert length() == depth and at(depth - 1) is mode, _broken(api, "does not push back")
        torch.relu(x)
    assert [f.__name__ for f in mode.seen] == ["relu"], _broken(api, "popped mode still sees")


def test_positions_new_call_matches_the_fast_path_literal() -> None:
    call = step_state.new_call(("a", "Linear", 1), "view")
    assert len(call) == positions.CALL_SIZE
    assert call[positions.INFO] == ("a", "Linear", 1) and call[positions.OP] == "view"
    # wrapping's inline literal: the same layout with INPUTS not yet set.
    source = inspect.getsource(tracer.core.wrapping._traced_forward)
    assert "[w.info, None, (), 0.0, None, None, None, None, None]" in source
    rest = (positions.OUTPUTS, positions.START, positions.DURATION, positions.GRADS)
    assert [call[i] for i in rest] == [(), 0.0, None, None]
    assert call[positions.IN_REF] is None and call[positions.OUT_REF] is None


def test_positions_name_the_pending_tensor_fields() -> None:
    x = torch.randn(2, 5, requires_grad=True)
    meta = step_state.single_meta(x)
    assert len(meta) == positions.TENSOR_SIZE
    assert meta[positions.SLOT] == "0" and tuple(meta[positions.SHAPE]) == (2, 5)
    assert meta[positions.DTYPE] is torch.float32 and meta[positions.DEVICE] == x.device
    assert meta[positions.REQUIRES_GRAD] is True and meta[positions.TYPE_NAME] == "Tensor"
    assert meta[positions.STATS_REF] is None
