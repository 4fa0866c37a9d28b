"""Hook factories and the set of hooks one trace owns (module pre/post hooks, gradient hooks).

Every hook is a small closure over explicit state (a :class:`~tracer.recorder.Recorder` and the
module's path). Hooks never raise into the user's forward or backward: an internal failure is
counted on the recorder and the call is recorded as far as it got.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tracer.modules import module_depth
from tracer.recorder import GRADS, SHARED, PendingCall, Recorder, shared

PreHook = Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], None]
PostHook = Callable[[nn.Module, tuple[Any, ...], dict[str, Any], Any], None]


def selected(path: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """Whether a module path passes the include/exclude globs (``fnmatch``, case-sensitive)."""
    if include is not None and not any(fnmatchcase(path, p) for p in include):
        return False
    return not (exclude and any(fnmatchcase(path, p) for p in exclude))


def module_hooks(
    rec: Recorder, path: str, type_: str, depth: int, grads: bool
) -> tuple[PreHook, PostHook]:
    """The pre-hook (``seq``, inputs, start time) and post-hook (outputs, duration) of a module.

    The overwhelmingly common call, one plain tensor in and one out with the op layer off, is
    recorded inline: its metadata tuple is shared with earlier calls (a lookup, no allocation
    that survives), the call is one list, each hook reads the clock once. Anything else goes
    through the recorder's generic walker.
    """
    info = (path, type_, depth)
    calls, stack = rec.calls, rec.stack  # cleared in place by the recorder, never replaced
    clock, tensor, stats, known = time.perf_counter, torch.Tensor, rec.stats, SHARED.get

    def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            if rec.ops_on:
                with torch._C.DisableTorchFunction():  # our own torch calls are not the model's
                    rec.begin_call(info, args, kwargs)
                return
            if kwargs or len(args) != 1 or type(args[0]) is not tensor:
                rec.begin_call(info, args, kwargs)
            else:
                x = args[0]
                call: PendingCall = [info, None, (), 0.0, None, None, None, None, None]
                calls.append(call)
                stack.append(call)
                meta = ("0", x.shape, x.dtype, x.device, x.requires_grad, "Tensor", None)
                call[1] = known(meta) or shared(meta)
                if stats:
                    call[7] = rec.stats_ref(x)
                call[3] = clock()
            if rec.on_outermost is not None and len(stack) == 1:
                rec.on_outermost(True)  # the op layer runs only inside traced forwards
        except Exception:
            rec.internal_errors += 1

    def post(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        end = clock()
        call = stack[-1] if stack and stack[-1][0] is info else rec.open_call(path)
        if call is None:
            return
        try:
            if rec.ops_on:
                with torch._C.DisableTorchFunction():
                    leaves = rec.end_call(call, result, end)
            elif type(result) is tensor:
                call[4] = end - call[3]
                if stack and stack[-1] is call:
                    stack.pop()
                else:
                    rec.pop(call)
                rg = result.requires_grad
                meta = ("0", result.shape, result.dtype, result.device, rg, "Tensor", None)
                call[2] = known(meta) or shared(meta)
                if stats:
                    call[8] = rec.stats_ref(result)
                leaves = [("0", result)] if rg else None
            else:
                leaves = rec.end_call(call, result, end)
            if grads and leaves and torch.is_grad_enabled():
                _watch_grads(rec, call, leaves)
        except Exception:
            rec.internal_errors += 1
        finally:
            if not stack and rec.ops_on and rec.on_outermost is not None:
                rec.on_outermost(False)

    return pre, post


def _watch_grads(rec: Recorder, call: PendingCall, leaves: list[tuple[str, Any]]) -> None:
    """Tensor hooks on the outputs: they survive in-place ops, unlike module backward hooks."""
    rec_ref = weakref.ref(rec)  # a kept output must not keep the whole recorder alive
    for slot, leaf in leaves:
        # Only graph tensors: a hook on a leaf (a returned parameter) would outlive the step.
        if isinstance(leaf, torch.Tensor) and leaf.requires_grad and leaf.grad_fn is not None:
            leaf.register_hook(_grad_hook(rec_ref, rec.generation, call, slot))


def _grad_hook(
    rec_ref: weakref.ref[Recorder], generation: int, call: PendingCall, slot: str
) -> Callable[[torch.Tensor], None]:
    def hook(grad: torch.Tensor) -> None:
        rec = rec_ref()
        # After t.step() (or after the trace closed) the step is written: a late gradient is
        # dropped rather than filed under the wrong step.
        if rec is None or rec.generation != generation or not rec.active:
            return
        try:
            if call[GRADS] is None:
                call[GRADS] = []
            call[GRADS].append((rec.describe(slot, grad), "grad"))
        except Exception:
            rec.internal_errors += 1

    return hook


def _param_grad_hook(rec: Recorder, path: str, name: str) -> Callable[[torch.Tensor], None]:
    def hook(param: torch.Tensor) -> None:
        grad = param.grad
        if grad is None or not rec.active:
            return
        try:
            # The last backward of the step wins: with gradient accumulation that is the total.
            rec.param_grads.setdefault(path, {})[name] = rec.describe(name, grad)
        except Exception:
            rec.internal_errors += 1

    return hook


class HookSet:
    """All the hooks of one trace: built once, attached on traced steps, detached otherwise."""

    def __init__(
        self,
        model: nn.Module,
        rec: Recorder,
        *,
        grads: bool,
        include: Sequence[str] | None,
        exclude: Sequence[str] | None,
    ) -> None:
        self._modules: list[tuple[nn.Module, PreHook, PostHook]] = []
        self._params: list[tuple[torch.Tensor, Callable[[torch.Tensor], None]]] = []
        self.paths: list[str] = []
        seen_params: set[int] = set()
        for path, module in model.named_modules():
            if not selected(path, include, exclude):
                continue
            self.paths.append(path)
            pre, post = module_hooks(rec, path, type(module).__name__, module_depth(path), grads)
            self._modules.append((module, pre, post))
            if grads:
                self._add_param_hooks(rec, path, module, seen_params)
        self._handles: list[RemovableHandle] = []

    def _add_param_hooks(self, rec: Recorder, path: str, module: nn.Module, seen: set[int]) -> None:
        for name, param in module.named_parameters(recurse=False):
            rec.param_rank.setdefault(name, len(rec.param_rank))
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))  # a tied parameter is reported on its first owner
                self._params.append((param, _param_grad_hook(rec, path, name)))

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered right now."""
        return bool(self._handles)

    def attach(self) -> None:
        """Register every hook; on failure nothing stays registered."""
        if self._handles:
            return
        try:
            for module, pre, post in self._modules:
                self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
                self._handles.append(
                    module.register_forward_hook(post, with_kwargs=True, always_call=True)
                )
            for param, hook in self._params:
                self._handles.append(param.register_post_accumulate_grad_hook(hook))
        except Exception:
            self.detach()
            raise

    def detach(self) -> None:
        """Remove every handle (safe to call twice)."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
