"""Module records: tree, depth, and parameter counts with tied parameters counted once."""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.parameter import UninitializedParameter

import tracer
from tracer.core import module_records as module_records_module
from tracer.core.module_records import DEFERRED_REPR, capture_modules, module_records
from tracer.records import ModuleRecord, ParamRecord
from tracer.sink import MemorySink


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.decoder = nn.Linear(4, 10, bias=False)
        self.decoder.weight = self.embed.weight  # weight tying
        self.body[0].bias.requires_grad_(False)


def test_modules_tree_and_tied_parameters_counted_once() -> None:
    records = {r.path: r for r in module_records(Tied())}
    assert list(records) == ["", "embed", "body", "body.0", "body.1", "decoder"]
    assert records["body.0"].parent == "body" and records["body.0"].depth == 2
    assert records[""].parent is None and records["embed"].parent == ""
    assert records[""].params_total == 40 + 16 + 4
    assert records[""].trainable_total == 40 + 16
    assert records["decoder"].params_own == 0 and records["decoder"].params_total == 40
    (weight,) = records["decoder"].parameters
    assert weight.shared_with == "embed.weight" and weight.numel == 40
    assert records["body.0"].trainable_own == 16 and records["body.0"].params_own == 20
    assert "in_features=4" in records["body.0"].extra_repr
    assert records["body"].type == "Sequential"


def _reference(model: nn.Module) -> list[ModuleRecord]:
    """Module records the obvious way: named_parameters() per module, a set per subtree."""
    owners: dict[int, str] = {}
    own: dict[int, tuple[int, int, tuple[ParamRecord, ...]]] = {}
    for path, module in model.named_modules():
        count = trainable = 0
        params = []
        for name, param in module.named_parameters(recurse=False, remove_duplicate=False):
            qualified = f"{path}.{name}" if path else name
            first = owners.setdefault(id(param), qualified)
            if isinstance(param, UninitializedParameter):
                shape, numel = (), 0
            else:
                shape, numel = tuple(param.shape), param.numel()
            if first == qualified:
                count += numel
                trainable += numel if param.requires_grad else 0
            params.append(
                ParamRecord(
                    name=name,
                    shape=shape,
                    dtype=str(param.dtype).removeprefix("torch."),
                    numel=numel,
                    requires_grad=param.requires_grad,
                    shared_with=None if first == qualified else first,
                )
            )
        own[id(module)] = (count, trainable, tuple(params))
    records = []
    for path, module in model.named_modules():
        distinct = {  # each parameter once, as each module of the subtree lists its own
            id(p): p for sub in module.modules() for p in sub.parameters(recurse=False)
        }.values()
        sizes = [0 if isinstance(p, UninitializedParameter) else p.numel() for p in distinct]
        grads = [p.requires_grad for p in distinct]
        count, trainable, params = own[id(module)]
        records.append(
            ModuleRecord(
                path=path,
                type=type(module).__name__,
                parent=None if path == "" else path.rpartition(".")[0],
                depth=0 if path == "" else path.count(".") + 1,
                params_own=count,
                params_total=sum(sizes),
                trainable_own=trainable,
                trainable_total=sum(n for n, g in zip(sizes, grads, strict=True) if g),
                extra_repr=module.extra_repr(),
                parameters=params,
            )
        )
    return records


class SharedChild(nn.Module):
    """One Linear under two parents, another under one parent twice, a parameter twice."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(3, 3)
        self.a = nn.Sequential(shared, nn.ReLU())
        self.b = nn.Sequential(nn.Linear(3, 2), shared)
        self.twice = nn.Sequential()
        lone = nn.Linear(2, 2, bias=False)
        self.twice.add_module("x", lone)
        self.twice.add_module("y", lone)
        self.scale = nn.Parameter(torch.ones(2))
        self.alias = self.scale  # the same parameter under a second name


class AncestorShared(nn.Module):
    """A module that is both a child of the root and a grandchild (found first under its
    other parent)."""

    def __init__(self) -> None:
        super().__init__()
        inner = nn.Linear(4, 4)
        self.outer = nn.Sequential(inner, nn.Linear(4, 1))
        self.inner = inner


class OwnParameters(nn.Module):
    """A class whose named_parameters hides one of its parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = nn.Parameter(torch.ones(3))
        self.hidden = nn.Parameter(torch.ones(5))

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, nn.Parameter]]:
        for name, param in super().named_parameters(*args, **kwargs):
            if name != "hidden":
                yield name, param


class Scripted(nn.Module):
    """A TorchScript submodule, whose parameter table is not a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.script = torch.jit.script(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
        self.head = nn.Linear(3, 1)


def _models() -> list[nn.Module]:
    frozen = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4).requires_grad_(False))
    frozen[0].bias.requires_grad_(False)
    half = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)).to(torch.float16)
    return [
        Tied(),
        SharedChild(),
        Scripted(),
        AncestorShared(),
        nn.Sequential(OwnParameters(), nn.Linear(2, 2)),
        nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2)),
        nn.Sequential(*[nn.Linear(8, 8) for _ in range(20)]),
        nn.Sequential(nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4)),
        frozen,
        half,
        nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2, enable_nested_tensor=False),
        nn.LSTM(4, 4, 2),
        nn.Identity(),
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_module_records_match_a_plain_walk(model: nn.Module, probe_path: str) -> None:
    # Each module's parameters are read by the compiled probe where it is loaded, else here.
    assert module_records(model) == _reference(model)
    # Records are frozen: equal parameter records may be one object, and a second walk gives
    # the same records again.
    assert module_records(model) == _reference(model)


@st.composite
def _tied_trees(draw: st.DrawFn) -> nn.Module:
    """A tree of containers and Linears (each module under one parent), then some of its
    parameters registered again, under new names, on other modules of the tree (tied weights,
    an alias in the same module, a descendant's or an ancestor's parameter), some frozen."""
    root = nn.Module()
    modules = [root]
    for i in range(draw(st.integers(1, 14))):
        parent = modules[draw(st.integers(0, len(modules) - 1))]
        child: nn.Module = (
            nn.Linear(draw(st.integers(1, 4)), draw(st.integers(1, 4)))
            if draw(st.booleans())
            else nn.Module()
        )
        parent.add_module(f"m{i}", child)
        modules.append(child)
    params = [p for m in modules for p in m.parameters(recurse=False)]
    if params:
        for k in range(draw(st.integers(0, 6))):
            param = params[draw(st.integers(0, len(params) - 1))]
            modules[draw(st.integers(0, len(modules) - 1))].register_parameter(f"tied{k}", param)
        for param in params:
            if draw(st.integers(0, 3)) == 0:
                param.requires_grad_(False)
    return root


@pytest.mark.parametrize("path", ["compiled", "python"])
@settings(max_examples=150, deadline=None)
@given(model=_tied_trees())
def test_module_records_of_random_trees_with_tied_parameters(model: nn.Module, path: str) -> None:
    if path == "python":  # without the compiled parameter pass
        with _python_parameter_pass():
            assert module_records(model) == _reference(model)
        return
    # A tree's totals are summed child by child, then corrected for parameters registered
    # more than once: each module's subtree must count each distinct parameter exactly once.
    assert module_records(model) == _reference(model)


@contextlib.contextmanager
def _python_parameter_pass() -> Iterator[None]:
    """Capture without the compiled parameter pass (as where the probe is not built)."""
    compiled = module_records_module.compiled_capture_pass
    module_records_module.compiled_capture_pass = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        module_records_module.compiled_capture_pass = compiled


def test_module_records_of_shared_modules_and_parameters() -> None:
    records = {r.path: r for r in module_records(SharedChild())}
    assert records[""].params_total == 12 + 8 + 4 + 2  # shared Linear, b.0, lone, scale once
    assert records["b"].params_total == 8 + 12 and records["b"].params_own == 0
    alias = records[""].parameters[1]
    assert (alias.name, alias.shared_with) == ("alias", "scale")
    assert records[""].params_own == 2
    nested = {r.path: r for r in module_records(AncestorShared())}
    assert nested[""].params_total == 20 + 5 and nested["outer"].params_total == 25
    assert "inner" not in nested  # named_modules() lists the shared module once


def test_module_records_of_a_lazy_module_before_and_after_it_is_built() -> None:
    model = nn.Sequential(nn.LazyLinear(3))
    before = {r.path: r for r in module_records(model)}
    assert before["0"].type == "LazyLinear" and before["0"].params_total == 0
    assert [p.shape for p in before["0"].parameters] == [(), ()]
    model(torch.randn(2, 5))
    after = {r.path: r for r in module_records(model)}
    assert after["0"].type == "Linear" and after["0"].params_total == 18
    assert after == {r.path: r for r in _reference(model)}


def test_captured_records_are_the_model_as_it_was_when_captured() -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.Linear(3, 3), nn.Dropout(0.1))
    want = module_records(model)
    captured = capture_modules(model)
    assert len(captured) == 4  # known without building the records
    model(torch.randn(2, 5))  # the lazy layer is built: a Linear now, with sizes
    model[1].requires_grad_(False)
    model.to(torch.float64)
    model[2].p = 0.5
    model.add_module("extra", nn.Linear(1, 1))
    model[1].weight = nn.Parameter(torch.ones(3, 3))
    assert list(captured) == want
    assert captured[0] == want[0] and captured[1:] == want[1:]
    assert captured.records() is captured.records()  # built once


def test_a_trace_reads_the_records_captured_at_open() -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.ReLU())
    want = module_records(model)
    sink = MemorySink()
    with tracer.trace(model, sink=sink) as t:
        model(torch.randn(2, 5))
        model[0].requires_grad_(False)
    assert t.modules == want and sink.modules == want
    assert t.modules is t.modules and sink.modules is not t.modules
    assert t.modules[1].type == "LazyLinear" and t.modules[1].trainable_total == 0


def _configurations() -> list[nn.Module]:
    """Each class whose text is written from a copy of its state, in several configurations."""
    return [
        nn.Linear(3, 4),
        nn.Linear(3, 4, bias=False),
        nn.modules.linear.NonDynamicallyQuantizableLinear(2, 2),
        nn.Bilinear(2, 3, 4, bias=False),
        nn.Embedding(10, 4),
        nn.Embedding(10, 4, padding_idx=0, max_norm=1.0, scale_grad_by_freq=True, sparse=True),
        nn.RMSNorm(8),
        nn.RMSNorm([2, 8], eps=1e-3, elementwise_affine=False),
        nn.MaxPool1d(2),
        nn.MaxPool2d(3, stride=1, padding=1, dilation=1, return_indices=True, ceil_mode=True),
        nn.MaxPool3d(2),
        nn.AvgPool1d(3, count_include_pad=False),
        nn.Conv1d(2, 4, 3, stride=2, padding=1, bias=False),
        nn.Conv2d(2, 4, (3, 5), padding="same", dilation=2, groups=2, padding_mode="reflect"),
        nn.Conv3d(2, 2, 1),
        nn.ConvTranspose1d(2, 3, 3, output_padding=1, stride=2),
        nn.ConvTranspose2d(2, 3, 3),
        nn.ConvTranspose3d(2, 3, 1, bias=False),
        nn.BatchNorm1d(4),
        nn.BatchNorm2d(4, momentum=None, affine=False, track_running_stats=False),
        nn.BatchNorm3d(4, eps=1e-3),
        nn.LayerNorm(8),
        nn.LayerNorm([2, 8], elementwise_affine=False, bias=False),
        nn.GroupNorm(2, 4, affine=False),
        nn.GroupNorm(1, 4, eps=1e-3),
    ]


def test_every_class_whose_text_is_deferred_has_a_configuration_here() -> None:
    assert {type(m) for m in _configurations()} == set(DEFERRED_REPR)


@pytest.mark.parametrize("module", _configurations(), ids=lambda m: repr(m)[:60])
def test_a_deferred_extra_repr_is_the_text_at_capture(module: nn.Module) -> None:
    # Torch's own classes have their text written from a copy of their state when the records
    # are built: the same text as the call at capture, whatever happens to the module after.
    model = nn.Sequential(module)
    want = module.extra_repr()
    captured = capture_modules(model)
    for name, value in list(vars(module).items()):
        if isinstance(value, bool):
            setattr(module, name, not value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(module, name, value + 1)
        elif isinstance(value, tuple):
            setattr(module, name, (*value, 1))
        elif isinstance(value, str):
            setattr(module, name, value + "x")
    for name in list(module._parameters):
        setattr(module, name, None)
    assert module.extra_repr() != want or not want  # the mutations show in the text now
    assert captured[1].extra_repr == want


def test_a_replaced_extra_repr_is_asked_at_capture() -> None:
    class Texts:
        calls = 0

    def custom(self: nn.Module) -> str:
        Texts.calls += 1
        return f"custom {Texts.calls}"

    model = nn.Sequential(nn.Linear(2, 2), nn.Identity())
    model[1].extra_repr = lambda: "mine"  # type: ignore[method-assign]
    original = nn.Linear.extra_repr
    nn.Linear.extra_repr = custom  # type: ignore[method-assign]
    try:
        captured = capture_modules(model)
        assert Texts.calls == 1  # called at capture, not when the records are built
        assert [r.extra_repr for r in captured] == ["", "custom 1", "mine"]
    finally:
        nn.Linear.extra_repr = original  # type: ignore[method-assign]


class _FailingText(nn.Linear):
    def extra_repr(self) -> str:
        raise RuntimeError("no text")


class _NumberText(nn.Module):
    def extra_repr(self) -> Any:
        return 42


class _OwnChildren(nn.Sequential):
    """Lists its children its own way: the totals are counted per distinct parameter."""

    def children(self) -> Iterator[nn.Module]:
        yield from super().children()


def test_every_branch_of_the_capture_is_the_same_compiled_and_in_python(probe_path: str) -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(
        _FailingText(2, 2),
        _NumberText(),
        _OwnChildren(shared, nn.ReLU(), shared),
        nn.Conv2d(1, 2, 3, bias=False),  # a deferred text
        nn.Identity(),
        OwnParameters(),
        Scripted(),
    )
    model[4].extra_repr = lambda: "mine"  # type: ignore[method-assign]
    captured = capture_modules(model)
    texts = {r.path: r.extra_repr for r in captured}
    assert texts["0"] == "" and texts["1"] == "42" and texts["4"] == "mine"
    assert texts["3"] == nn.Conv2d(1, 2, 3, bias=False).extra_repr()
    records = {r.path: r for r in captured}
    assert records["2"].params_total == 12 and records["5"].params_own == 3
    assert records[""].params_total == sum(p.numel() for p in set(model.parameters())) - 5
    # the pairs as any sequence (the Python loop), and the same records
    named = tuple(model.named_modules())
    assert capture_modules(model, named).records() == captured.records()  # type: ignore[arg-type]


def _counts_of(records: list[ModuleRecord]) -> tuple[dict[str, int], tuple[int, int]]:
    root = records[0]
    return {r.path: r.params_own for r in records}, (root.params_total, root.trainable_total)


@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_parameter_counts_without_the_records_are_the_records_counts(model: nn.Module) -> None:
    captured = capture_modules(model)
    counts = captured.counts()
    assert captured._built is None  # read without building the records
    assert counts == _counts_of(captured.records())
    assert captured.counts() == counts  # and again from the built records


@settings(max_examples=100, deadline=None)
@given(_tied_trees())
def test_parameter_counts_of_random_trees_with_tied_parameters(model: nn.Module) -> None:
    assert capture_modules(model).counts() == _counts_of(module_records(model))


class _Emptying(nn.Parameter):
    """A parameter whose shape, when read, empties its module's parameter table."""

    owner: nn.Module | None = None

    @property
    def shape(self) -> torch.Size:  # type: ignore[override]
        if _Emptying.owner is not None:
            _Emptying.owner._parameters.clear()
        return super().shape


def test_a_parameter_that_changes_its_module_while_read_is_no_crash() -> None:
    # Capturing reads each parameter's facts while walking its module's table; a parameter
    # whose reading empties that table must not take the walk down with it.
    module = nn.Linear(3, 3)
    module.weight = _Emptying(torch.ones(3, 3))
    module.register_parameter("later", nn.Parameter(torch.ones(2)))
    _Emptying.owner = module
    try:
        try:
            records = capture_modules(module).records()
        except RuntimeError as exc:  # the Python walk: the dict changed during iteration
            assert "changed size" in str(exc)
        else:
            assert records[0].parameters[0].name == "weight"
            assert records[0].parameters[0].shape == (3, 3)
    finally:
        _Emptying.owner = None


def test_captured_records_keep_no_tensor_or_module_of_the_model_alive() -> None:
    # What a capture keeps of a module (to write its text later) is plain values: a kept
    # summary or capture must not keep the model, its parameters or its hooks alive.
    def run() -> tuple[Any, list[weakref.ref[Any]]]:
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2))
        model[0].extra = torch.ones(1000)  # a tensor kept as a plain attribute
        model[1].register_forward_hook(lambda *args: None)
        summary = tracer.summary(model, torch.randn(1, 1, 5, 5), echo=False)
        captured = capture_modules(model)
        kept = [model, model[0], model[0].weight, model[0].extra, model[1].running_mean]
        return (summary, captured), [weakref.ref(o) for o in kept]

    held, refs = run()
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    summary, captured = held
    assert "2, eps=1e-05" in summary.modules[2].extra_repr and captured[1].extra_repr


_state_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.tuples(st.integers(), st.integers()),
    st.tuples(st.integers(), st.booleans()),
    st.lists(st.integers(), max_size=2),
    st.just(torch.ones(1)),
    st.just({"nested": 1}),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=6), _state_values, max_size=8),
    st.dictionaries(st.text(min_size=1, max_size=4), st.sampled_from([None, "tensor"]), max_size=3),
)
def test_the_compiled_state_copy_is_the_python_one(
    values: dict[str, Any], params: dict[str, str | None]
) -> None:
    from tracer.core._speedups import plain_state

    state = dict(values)
    state["_parameters"] = {
        k: None if v is None else nn.Parameter(torch.ones(1)) for k, v in params.items()
    }
    want = module_records_module._plain_state(state)
    got = plain_state(state)
    assert got == want and list(got) == list(want)
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
