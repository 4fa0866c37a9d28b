"""How a trace sees module calls (a wrapped ``forward``) and gradients (tensor hooks).

A traced module's ``forward`` is replaced, on the instance, by its :class:`Wrap`: calling it
records the call's inputs, runs the original ``forward`` and records the outputs. This costs a
fraction of a module forward hook pair: PyTorch runs a module without hooks through its fast
path, and the pair of do-nothing hooks alone made a 1,000-call model 1.32x slower here, the
wrapper 1.05x. The user's own hooks keep running around ``forward`` as before; the wrapper sees
the arguments as the user's pre-hooks left them and the result before the user's forward hooks
see it. ``inspect.signature(module.forward)`` still gives the original signature
(``__wrapped__``), and a copy of a traced module (``copy.deepcopy``, pickling) gets a
pass-through forward bound to the copy, never to the traced original.

Where the compiled probe is loaded, Wrap's base is ``tracer.core._probe.WrapCore``
(``tracer/core/_probe.cpp``): the common call (one plain tensor in, the op layer off, the
compiled probe and statistics request) is recorded in C++, exactly as :func:`_traced_forward`
records it, and every other call or unusual turn (an error, a non-tensor result, gradient
hooks) goes to the Python functions here. Without it the base is :class:`_PyWrapCore`, whose
call is :func:`_traced_forward` itself.

Nothing here raises into the user's forward or backward: an internal failure is counted on the
recorder and the call is recorded as far as it got. An error raised by the model itself reaches
the user unchanged, and the call is still recorded (without outputs).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from functools import partial
from types import MethodType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tracer.core.op_layer import OP_FREE, op_free_call, put_back, set_aside
from tracer.core.positions import (
    DURATION,
    GRADS,
    IN_REF,
    INPUTS,
    OUT_REF,
    OUTPUTS,
    REQUIRES_GRAD,
    START,
)
from tracer.core.probe import WrapCore, bind_wrapping, make_wraps
from tracer.core.step_state import CallInfo, PendingCall, Recorder
from tracer.core.torch_compat import (
    CAN_DISABLE_TORCH_FUNCTION,
    REPLICATE_ATTR,
    DisableTorchFunction,
    EnableTorchFunction,
    replicate_for_data_parallel,
)

_MISSING = object()
_clock = time.perf_counter
# Private in torch (tracer.core.torch_compat): the op layer needs the first (it refuses to start
# without it); without the second, calls under the op layer take the generic path.
_DisableTorchFunction: Any = DisableTorchFunction
_EnableTorchFunction = EnableTorchFunction if CAN_DISABLE_TORCH_FUNCTION else None
_Tensor = torch.Tensor


def selected(path: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """Whether a module path passes the include/exclude globs (``fnmatch``, case-sensitive)."""
    if include is not None and not any(fnmatchcase(path, p) for p in include):
        return False
    return not (exclude and any(fnmatchcase(path, p) for p in exclude))


class _PyWrapCore:
    """Wrap's base without the compiled probe: the fields the call reads; the call is
    :func:`_traced_forward` (set below)."""

    __slots__ = ("grads", "info", "inner", "live", "rec")

    if TYPE_CHECKING:

        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


if TYPE_CHECKING:
    _WrapBase = _PyWrapCore
else:
    _WrapBase = _PyWrapCore if WrapCore is None else WrapCore


class Wrap(_WrapBase):
    """One module's traced forward: installed as the module's instance ``forward``, calling it
    records the call; its fields say what it records into and what it calls.

    While the forward is installed, the wrapper's :meth:`_replicate` is also the module's
    ``_replicate_for_data_parallel``."""

    __slots__ = ("module", "op_free", "ops", "saved")

    # The fields the call reads (the base's): the Recorder (None: a dead wrapper), the module's
    # (path, type name, depth), whether to watch the outputs' gradients, the forward being
    # wrapped, and whether the wrapper records (False: a plain pass-through to ``inner``).
    rec: Recorder | None
    info: CallInfo
    grads: bool
    inner: Callable[..., Any] | None
    live: bool

    def __init__(
        self, rec: Recorder | None, info: CallInfo, grads: bool, module: nn.Module | None = None
    ) -> None:
        self.rec = rec
        self.info = info
        self.grads = grads
        # The traced module, weakly: the module's own attributes refer to this wrapper.
        self.module: weakref.ref[nn.Module] | None = None if module is None else weakref.ref(module)
        self.inner: Callable[..., Any] | None = None  # the forward being wrapped
        self.live = False  # False: a plain pass-through to ``inner``
        self.saved: Any = _MISSING  # the module's instance ``forward`` before, if it had one
        # While the op layer records: the same call, its forward run with torch functions on
        # (made by with_ops on the first such call after each attach).
        self.ops: Wrap | None = None
        # A module of a class whose forward runs no recorded op (tracer.core.op_layer), with
        # its class forward: True, or the number of dimensions its one input must have for
        # that (op_layer.OP_FREE). Such calls run with the op layer's mode set aside, and an
        # outermost one does not push it at all.
        self.op_free: bool | int = False

    def with_ops(self) -> Wrap | None:
        """Make :attr:`ops` for the forward being wrapped now (see :func:`_traced_ops`); None
        where there is no op layer (or no way to switch torch functions back on)."""
        rec = self.rec
        if (
            _EnableTorchFunction is None
            or rec is None
            or rec.on_outermost is None
            or self.inner is None
        ):
            return None
        ops = Wrap(rec, self.info, self.grads)
        ops.inner = partial(_forward_with_ops, rec, self.inner)
        ops.live = True
        self.ops = ops
        return ops

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        """The forward being wrapped: ``inspect.signature(module.forward)`` gives its signature."""
        inner = self.inner
        if inner is None:
            raise AttributeError("__wrapped__")
        return inner

    def _replicate(self) -> nn.Module:
        """The traced module's ``_replicate_for_data_parallel``: a replica without the traced
        forward.

        ``nn.DataParallel`` makes its per-device replicas by copying each module's
        ``__dict__``, so a replica would get the wrapper that calls the *original* module's
        forward (its parameters, its device) and records from several threads at once. As this
        instance attribute, the wrapper makes the replica as the class does, then gives it back
        its own forward: replicas run untraced."""
        module = None if self.module is None else self.module()
        if module is None:
            raise ReferenceError("the traced module is gone")
        replica = replicate_for_data_parallel(module)
        state = replica.__dict__
        if _is_replicator(state.get(REPLICATE_ATTR), self):
            del state[REPLICATE_ATTR]
        if _is_wrapper(state.get("forward"), self):
            if self.saved is _MISSING:
                del state["forward"]
            else:
                state["forward"] = self.saved
        return replica

    def __reduce__(self) -> tuple[Any, ...]:
        # A copied or pickled module gets a dead wrapper around its own (copied) forward, and
        # its replicas are made from the copy.
        module = None if self.module is None else self.module()
        return (_dead, (self.info, self.inner, module))


def _dead(
    info: CallInfo, inner: Callable[..., Any] | None, module: nn.Module | None = None
) -> Wrap:
    wrap = Wrap(None, info, False, module)
    wrap.inner = inner
    return wrap


def _is_wrapper(forward: Any, wrap: Wrap) -> bool:
    """Whether ``forward`` is the traced forward of ``wrap`` (or a copy's, of its copy)."""
    return forward is wrap


def _is_replicator(method: Any, wrap: Wrap) -> bool:
    """Whether ``method`` is the ``_replicate_for_data_parallel`` that ``wrap`` installed."""
    return type(method) is MethodType and method.__self__ is wrap


def _traced_forward(w: Wrap, /, *args: Any, **kwargs: Any) -> Any:
    """Record one module call around the original forward (the body of every wrapper; the
    compiled WrapCore does its common call itself, the same way, and hands it the rest)."""
    inner = w.inner
    rec = w.rec
    if not w.live or rec is None:
        return inner(*args, **kwargs)  # type: ignore[misc]
    if kwargs or len(args) != 1 or type(args[0]) is not _Tensor:
        return _traced_generic(w, rec, args, kwargs)
    if rec.ops_on:
        return _traced_ops(w, rec, args[0])
    # The overwhelmingly common call, one plain tensor in and one out with the op layer off,
    # is recorded inline: its metadata tuple is shared with earlier calls (a lookup, no
    # allocation that survives), the call is one list, the clock is read twice. In a chain of
    # layers the input is the previous call's output: the same tensor at the same version has
    # the same record and statistics (tracer.core.probe answers both questions, compiled if built).
    x = args[0]
    stack = rec.stack
    request = rec.request
    probe = rec.probe
    # new_call()'s list, written out: INFO, INPUTS, OUTPUTS, START, DURATION, GRADS, OP, IN_REF,
    # OUT_REF (a literal is cheaper than the call; tests check the two agree).
    call: PendingCall = [w.info, None, (), 0.0, None, None, None, None, None]
    rec.calls.append(call)
    stack.append(call)
    try:
        same = probe.chained(x)
        if same is not None:
            call[INPUTS], call[IN_REF] = same
        else:
            call[INPUTS] = probe.meta(x)
            if request is not None:
                call[IN_REF] = request(x)
        if rec.on_outermost is not None and len(stack) == 1 and not op_free_call(w.op_free, x):
            rec.on_outermost(True)  # the op layer runs only inside traced forwards that can
    except Exception as exc:  # record an op
        rec.fail(exc)
    call[START] = start = _clock()
    try:
        result = inner(x)  # type: ignore[misc]
    except BaseException:
        _close(w, rec, call, None, _clock())
        raise
    end = _clock()
    if type(result) is not _Tensor or rec.ops_on:
        _close(w, rec, call, result, end)
        return result
    call[DURATION] = end - start
    if stack and stack[-1] is call:
        stack.pop()
    else:
        rec.pop(call)
    try:
        meta = call[OUTPUTS] = probe.meta(result)
        index = call[OUT_REF] = request(result) if request is not None else None
        probe.remember(result, meta, index)
        if meta[REQUIRES_GRAD] and w.grads and torch.is_grad_enabled():
            _watch_grads(rec, call, [("0", result)])
    except Exception as exc:
        rec.fail(exc)
    return result


def _traced_ops(w: Wrap, rec: Recorder, x: torch.Tensor) -> Any:
    """A one-tensor call while the op layer records: the fast path above, with torch functions
    off for its own bookkeeping (which the op layer must not see) and back on for the module's
    forward, whose ops are recorded (:func:`_forward_with_ops`)."""
    if op_free_call(w.op_free, x):
        mode = set_aside()
        if mode is not None:
            rec.ops_on = False  # the fast path, as with the op layer off
            try:
                return w(x)
            finally:
                rec.ops_on = True
                put_back(mode)
    ops = w.ops
    if ops is None:
        ops = w.with_ops()
        if ops is None:  # this torch cannot switch torch functions back on: the generic path
            return _traced_generic(w, rec, (x,), {})
    with _DisableTorchFunction():
        rec.ops_on = False  # the fast path's bookkeeping runs as with the op layer off
        try:
            return ops(x)
        finally:
            rec.ops_on = True


def _forward_with_ops(rec: Recorder, inner: Callable[..., Any], x: torch.Tensor) -> Any:
    """The module's own forward inside :func:`_traced_ops`: the op layer on again."""
    rec.ops_on = True
    try:
        with _EnableTorchFunction():  # type: ignore[misc]
            return inner(x)
    finally:
        rec.ops_on = False


def _traced_generic(w: Wrap, rec: Recorder, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Any other call: several or nested inputs, keyword arguments, the op layer on."""
    call = None
    try:
        if rec.ops_on:
            with _DisableTorchFunction():  # our own torch calls are not the model's
                call = rec.begin_call(w.info, args, kwargs)
        else:
            call = rec.begin_call(w.info, args, kwargs)
        if rec.on_outermost is not None and len(rec.stack) == 1:
            rec.on_outermost(True)
    except Exception as exc:
        rec.fail(exc)
    try:
        result = w.inner(*args, **kwargs)  # type: ignore[misc]
    except BaseException:
        if call is not None:
            _close(w, rec, call, None, _clock())
        raise
    if call is not None:
        _close(w, rec, call, result, _clock())
    return result


def _close(w: Wrap, rec: Recorder, call: PendingCall, result: Any, end: float) -> None:
    """Duration, outputs and gradient hooks of a call that returned ``result`` at ``end``."""
    try:
        if rec.ops_on:
            with _DisableTorchFunction():
                leaves = rec.end_call(call, result, end)
        else:
            leaves = rec.end_call(call, result, end)
        if w.grads and leaves and torch.is_grad_enabled():
            _watch_grads(rec, call, leaves)
    except Exception as exc:
        rec.fail(exc)
    finally:
        if not rec.stack and rec.ops_on and rec.on_outermost is not None:
            rec.on_outermost(False)


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
        except Exception as exc:
            rec.fail(exc)

    return hook


def _param_grad_hook(rec: Recorder, path: str, name: str) -> Callable[[torch.Tensor], None]:
    def hook(param: torch.Tensor) -> None:
        grad = param.grad
        if grad is None or not rec.active:
            return
        try:
            # The last backward of the step wins: with gradient accumulation that is the total.
            rec.param_grads.setdefault(path, {})[name] = rec.describe(name, grad)
        except Exception as exc:
            rec.fail(exc)

    return hook


def fused_encoder_layers(
    model: nn.Module,
    traced: Iterable[str],
    named: Iterable[tuple[str, nn.Module]] | None = None,
) -> list[tuple[str, nn.Module]]:
    """The ``nn.TransformerEncoderLayer`` modules that are traced themselves or inside
    (``named``: the model's ``named_modules()``, when the caller has them).

    Such a layer runs a fused kernel, without calling its sublayers, unless a forward hook sits
    on it or inside it: the trace puts one there (HookSet) and says so in the notes.
    """
    layers: list[tuple[str, nn.Module]] = [
        (path, module)
        for path, module in (model.named_modules() if named is None else named)
        if isinstance(module, nn.TransformerEncoderLayer)
    ]
    if not layers:
        return layers
    paths = set(traced)
    return [
        (path, module)
        for path, module in layers
        if any(p == path or p.startswith(f"{path}.") for p in paths)
    ]


class HookSet:
    """Everything one trace installs: built once, attached on traced steps, detached otherwise."""

    def __init__(
        self,
        model: nn.Module,
        rec: Recorder,
        *,
        grads: bool,
        include: Sequence[str] | None,
        exclude: Sequence[str] | None,
        named: Sequence[tuple[str, nn.Module]] | None = None,
    ) -> None:
        """``named``: the model's ``named_modules()``, when the caller already has them."""
        if named is None:
            named = list(model.named_modules())
        # Each module, its wrapper (its traced forward) and the wrapper's _replicate, bound once.
        self._modules: list[tuple[nn.Module, Wrap, Callable[[], nn.Module]]] = []
        self._params: list[tuple[torch.Tensor, Callable[[torch.Tensor], None]]] = []
        self.paths: list[str] = []
        seen_params: set[int] = set()
        everything = include is None and not exclude
        if everything and _make_wraps is not None and type(named) is list:
            self._modules, self.paths = _make_wraps(Wrap, named, rec, grads, _MISSING, _REPLICATE)
        else:
            add_path, add_module = self.paths.append, self._modules.append
            for path, module in named:
                if not everything and not selected(path, include, exclude):
                    continue
                add_path(path)
                depth = path.count(".") + 1 if path else 0  # module_depth(path)
                wrap = Wrap(rec, (path, type(module).__name__, depth), grads, module)
                add_module((module, wrap, wrap._replicate))
        if grads:
            for (module, _, _), path in zip(self._modules, self.paths, strict=True):
                self._add_param_hooks(rec, path, module, seen_params)
        #: The encoder layers traced themselves or inside (see fused_encoder_layers): wrapping
        #: alone would keep their fused fast path and so lose their sublayers' calls, so a
        #: do-nothing pre-hook on each keeps every call recorded.
        self.encoder_layers = fused_encoder_layers(model, self.paths, named)
        self._handles: list[RemovableHandle] = []
        self._attached = False

    def _add_param_hooks(self, rec: Recorder, path: str, module: nn.Module, seen: set[int]) -> None:
        for name, param in module.named_parameters(recurse=False):
            rec.param_rank.setdefault(name, len(rec.param_rank))
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))  # a tied parameter is reported on its first owner
                self._params.append((param, _param_grad_hook(rec, path, name)))

    def attach(self) -> None:
        """Install every wrapper and hook; on failure nothing stays installed."""
        if self._attached:
            return
        self._attached = True
        try:
            for module, wrap, replicate in self._modules:
                state = module.__dict__
                wrap.saved = saved = state.get("forward", _MISSING)
                # The class's own forward only: a forward set on the instance promises nothing.
                wrap.op_free = saved is _MISSING and OP_FREE.get(type(module), False)
                wrap.inner = module.forward  # the instance's forward, or the class's
                wrap.live = True
                wrap.ops = None  # for this forward: made by the first call that records ops
                state["forward"] = wrap
                state.setdefault(REPLICATE_ATTR, replicate)  # replicas made untraced
            for _, module in self.encoder_layers:
                self._handles.append(module.register_forward_pre_hook(_no_op))
            for param, hook in self._params:
                self._handles.append(param.register_post_accumulate_grad_hook(hook))
        except Exception:
            self.detach()
            raise

    def detach(self) -> None:
        """Restore every forward and remove every hook (safe to call twice)."""
        if not self._attached:
            return
        self._attached = False
        for module, wrap, replicate in self._modules:
            wrap.live = False  # a wrapper someone else kept now just passes through
            state = module.__dict__
            if state.get("forward") is wrap:  # installed, not replaced since
                if wrap.saved is _MISSING:
                    del state["forward"]
                else:
                    state["forward"] = wrap.saved
            if state.get(REPLICATE_ATTR) is replicate:
                del state[REPLICATE_ATTR]
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()


def _no_op(module: nn.Module, args: Any) -> None:
    return None


#: The loop of HookSet's wrappers compiled (tracer/core/_probe.cpp ``make_wraps``: each made as
#: ``Wrap(rec, info, grads, module)`` makes it), where the compiled probe is loaded.
_make_wraps = make_wraps if WrapCore is not None and issubclass(Wrap, WrapCore) else None
_REPLICATE = Wrap._replicate


# Without the compiled probe the wrapper's call is the Python fast path itself; with it, the
# compiled call hands everything but the common case to these functions.
_PyWrapCore.__call__ = _traced_forward  # type: ignore[method-assign,assignment]
if bind_wrapping is not None:
    bind_wrapping(_traced_forward, _close, _watch_grads)
