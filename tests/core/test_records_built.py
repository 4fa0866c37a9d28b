"""The compiled twins of the record builders: a step's records and the statistics dicts of
its vectors are what the Python functions make."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any

import pytest
import torch
from core.models import ArticleLSTM, DictModel, NestedModel, PackedLSTM, TwiceModel, mlp
from core.test_compiled_forward import Catches
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tracer
from tracer.core import step_state
from tracer.core.stats import stats_from_kernel
from tracer.core.stats_layout import SIZE, Stat
from tracer.core.step_state import StepRecords, _records, _stats_reader

#: Skipped without the compiled module (failed under $TRACER_REQUIRE_EXTENSIONS).
pytestmark = pytest.mark.needs_extension("speedups")


def _runs() -> dict[
    str, Callable[[], tuple[nn.Module, Callable[[nn.Module], Any], dict[str, Any]]]
]:
    """Models, how one step runs them, and the trace's options: nested and opaque inputs and
    outputs, ops, repeated calls, gradients and parameter gradients, shapes only."""

    def forward(*args: Any, **kwargs: Any) -> Callable[[nn.Module], Any]:
        return lambda model: model(*args, **kwargs)

    def backward(x: torch.Tensor) -> Callable[[nn.Module], Any]:
        return lambda model: model(x).sum().backward()

    return {
        "lstm_ops": lambda: (
            ArticleLSTM(vocab=50, embed=4, hidden=6),
            forward(torch.randint(0, 50, (3, 5))),
            {"ops": True},
        ),
        "nested": lambda: (
            NestedModel(),
            forward(torch.randn(2, 4), mask=torch.ones(2, 4), note="x"),
            {},
        ),
        "dict": lambda: (DictModel(), forward(torch.randn(2, 6)), {"ops": True}),
        "twice": lambda: (TwiceModel(), forward(torch.randn(2, 4)), {"ops": True}),
        "packed": lambda: (
            PackedLSTM(),
            forward(torch.randn(3, 4, 3), torch.tensor([4, 2, 3])),
            {},
        ),
        "grads": lambda: (mlp(3, 8), backward(torch.randn(2, 8)), {"grads": True}),
        "shapes_only": lambda: (mlp(4, 8), forward(torch.randn(2, 8)), {"stats": False}),
        "raises": lambda: (Catches(), forward(torch.randn(2, 4)), {}),
    }


@pytest.mark.parametrize("name", sorted(_runs()))
def test_compiled_and_python_builders_give_the_same_records(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: list[tuple[Any, ...]] = []
    original = StepRecords.__init__

    def keep(self: StepRecords, step: int, calls: Any, grads: Any, rank: Any, stats: Any) -> None:
        captured.append((calls, step, grads, rank, stats))
        original(self, step, calls, grads, rank, stats)

    monkeypatch.setattr(StepRecords, "__init__", keep)
    torch.manual_seed(0)
    model, run, options = _runs()[name]()
    with tracer.trace(model, **options) as t:
        for _ in range(2):
            run(model)
            t.step()
    assert captured and t.internal_errors == 0
    compiled_builder = step_state._build_records
    assert compiled_builder is not None
    for calls, step, grads, rank, stats in captured:
        compiled = _records(calls, step, grads, rank, _stats_reader(stats))
        monkeypatch.setattr(step_state, "_build_records", None)
        python = _records(calls, step, grads, rank, _stats_reader(stats))
        monkeypatch.setattr(step_state, "_build_records", compiled_builder)
        assert compiled == python
        assert [type(c) for c in compiled] == [type(c) for c in python]
        for a, b in zip(compiled, python, strict=True):
            for role in ("inputs", "outputs", "grads"):
                assert [type(r) for r in getattr(a, role)] == [type(r) for r in getattr(b, role)]
                assert [type(r.shape) for r in getattr(a, role)] == [tuple] * len(getattr(a, role))


def test_records_without_statistics_are_shared_between_steps() -> None:
    # A record without statistics repeats from step to step: both builders hand out the one
    # interned record (built once), so a long shapes-only run keeps one of each.
    model, x = mlp(2, 8), torch.randn(2, 8)
    with tracer.trace(model, stats=False) as t:
        for _ in range(3):
            model(x)
            t.step()
    by_step = [t.flow(step) for step in range(3)]
    for calls in by_step[1:]:
        for a, b in zip(by_step[0], calls, strict=True):
            assert a.outputs is b.outputs and a.inputs is b.inputs


def test_the_builder_refuses_malformed_pending_calls_with_an_error() -> None:
    # What it reads comes from the recorder alone; a wrong shape is a TypeError, never a crash.
    builder = step_state._build_records
    assert builder is not None
    ctx = (*step_state._BUILD_HEAD, step_state._freeze_grads, None, *step_state._BUILD_TAIL)
    read = _stats_reader(None)  # type: ignore[arg-type]
    for calls in (
        [["not", "a", "call"]],
        [[("p", "T"), (), (), 0.0, None, None, None, None, None]],
    ):
        with pytest.raises(TypeError):
            builder(calls, 0, read, {}, ctx)
    with pytest.raises(TypeError):
        builder([], 0, read, {}, ctx[:5])


@st.composite
def _vectors(draw: st.DrawFn) -> list[float]:
    """A statistics vector as a step keeps it: whole counts (finite ones at most all, NaNs at
    most the rest), and any double in the sums and extremes."""
    numel = draw(st.integers(0, 2**40))
    finite = draw(st.integers(0, numel))
    nans = draw(st.integers(0, numel - finite))
    values = st.floats(allow_nan=True, allow_infinity=True)
    v = [0.0] * SIZE
    v[Stat.NUMEL], v[Stat.FINITE], v[Stat.NAN] = float(numel), float(finite), float(nans)
    for position in (Stat.SUM, Stat.SPREAD, Stat.L2, Stat.L1, Stat.MIN, Stat.MAX):
        v[position] = draw(values)
    for position in (Stat.NONZERO, Stat.NEAR_ZERO, Stat.NEAR_ONE):
        v[position] = float(draw(st.integers(0, finite)))
    return v


@settings(max_examples=300, deadline=None)
@given(st.lists(_vectors(), min_size=1, max_size=4), st.data())
def test_compiled_vector_statistics_are_stats_from_kernel(
    vectors: list[list[float]], data: st.DataObject
) -> None:
    from tracer.core._speedups import kernel_stats

    flat = [x for v in vectors for x in v]
    which = data.draw(st.integers(0, len(vectors) - 1))
    at = which * SIZE
    want = stats_from_kernel(flat, at)
    for container in (array("d", flat), flat, tuple(flat)):
        got = kernel_stats(container, at)
        assert list(got) == list(want)  # the same keys in the same order
        for key, value in want.items():
            assert type(got[key]) is type(value), key
            assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key


def test_compiled_vector_statistics_refuse_what_is_not_a_vector() -> None:
    from tracer.core._speedups import kernel_stats

    for bad, at in (([1.0] * 5, 0), (array("d", [1.0] * SIZE), 1), (array("f", [1.0] * SIZE), 0)):
        with pytest.raises((IndexError, ValueError)):
            kernel_stats(bad, at)
    with pytest.raises(TypeError):
        kernel_stats(["x"] * SIZE, 0)
