"""The tensor probes (compiled and Python) give the same answers, and hold no tensor."""

from __future__ import annotations

import gc
import math
import weakref
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tracer
from tracer.core import probe as probe_module
from tracer.core.probe import PyProbe, TensorProbe, new_probe
from tracer.core.stats_layout import Stat
from tracer.core.step_state import single_meta


@pytest.fixture
def probe(probe_path: str) -> TensorProbe:
    """A new probe of each kind (see ``probe_path``)."""
    return new_probe(single_meta)


@pytest.mark.needs_extension("probe")
def test_probe_is_built() -> None:
    assert probe_module.probe_available()


def test_the_fixture_picks_the_probe(probe: TensorProbe, probe_path: str) -> None:
    assert isinstance(probe, PyProbe) == (probe_path == "python")


def test_meta_is_the_shared_single_tensor_tuple(probe: TensorProbe) -> None:
    x = torch.randn(3, 4)
    meta = probe.meta(x)
    cpu = torch.device("cpu")
    assert meta == ("0", torch.Size([3, 4]), torch.float32, cpu, False, "Tensor", None)
    assert probe.meta(torch.zeros(3, 4)) is meta  # equal metadata: the same tuple
    assert single_meta(x) is meta  # the tuple the rest of the recorder shares
    for other in (
        torch.randn(4, 3),
        torch.randn(3, 4, dtype=torch.float64),
        torch.randn(3, 4, requires_grad=True),
        torch.randn(3, 4).to(torch.bfloat16),
        torch.empty(3, 4, device="meta"),
        torch.tensor(1.0),
        torch.zeros(0, 4),
        torch.arange(12).view(3, 4),
    ):
        got = probe.meta(other)
        assert got == single_meta(other) and got is not meta
        assert probe.meta(other) is got


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_meta_of_unusual_tensors_is_the_python_answer(probe: TensorProbe) -> None:
    deep = torch.zeros([1] * 10)  # more dimensions than the compiled table keys
    assert probe.meta(deep) == single_meta(deep)
    param = nn.Parameter(torch.randn(2, 2))  # a subclass
    assert probe.meta(param) == single_meta(param)
    assert probe.meta(param)[4] is True
    sparse = torch.randn(3, 3).to_sparse()
    assert probe.meta(sparse) == single_meta(sparse)
    quantized = torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8)
    assert probe.meta(quantized) == single_meta(quantized)


def test_chained_only_for_the_remembered_tensor_unchanged(probe: TensorProbe) -> None:
    x = torch.randn(3, 4)
    meta = probe.meta(x)
    assert probe.chained(x) is None  # nothing remembered yet
    probe.remember(x, meta, 7)
    assert probe.chained(x) == (meta, 7)
    assert probe.chained(torch.randn(3, 4)) is None  # same metadata, another tensor
    assert probe.chained(x.view(4, 3)) is None  # a view is another tensor
    assert probe.chained(x[:]) is None
    x.add_(1)  # written in place: its statistics may differ now
    assert probe.chained(x) is None
    probe.remember(x, meta, 8)
    assert probe.chained(x) == (meta, 8)
    x.requires_grad_()  # no version bump, but the record would differ
    assert probe.chained(x) is None
    probe.remember(x, probe.meta(x), None)
    assert probe.chained(x) == (probe.meta(x), None)
    probe.forget()
    assert probe.chained(x) is None


def test_inference_tensors_are_never_chained(probe: TensorProbe) -> None:
    with torch.inference_mode():
        x = torch.randn(2, 2)
    probe.remember(x, probe.meta(x), 1)  # no version counter: nothing to prove it unchanged
    assert probe.chained(x) is None
    y = torch.randn(2)
    probe.remember(y, probe.meta(y), 2)
    probe.remember(x, probe.meta(x), 3)  # and it replaces what was remembered
    assert probe.chained(y) is None


def test_remember_holds_no_tensor(probe: TensorProbe) -> None:
    x = torch.randn(1000, 1000)
    ref = weakref.ref(x)
    storage = weakref.ref(x.untyped_storage())
    probe.remember(x, probe.meta(x), 0)
    del x
    gc.collect()
    assert ref() is None and storage() is None
    # A new tensor (possibly at the same address) is not taken for the remembered one.
    for _ in range(50):
        y = torch.randn(1000, 1000)
        assert probe.chained(y) is None
        del y


@pytest.mark.needs_extension("probe")
def test_compiled_probe_rejects_bad_arguments() -> None:
    compiled: Any = probe_module._CompiledProbe
    assert compiled is not None
    with pytest.raises(TypeError):
        compiled(3)  # make must be callable
    p = compiled(single_meta)
    with pytest.raises(TypeError):
        p.remember(torch.randn(2))
    assert p.chained("not a tensor") is None
    # make's answer, as the Python probe would give it
    assert p.meta("not a tensor") == ("0", (), None, None, False, "str", None)


@pytest.mark.needs_extension("probe", "speedups")
def test_compiled_float_stats_reads_plain_cpu_float_tensors_only() -> None:
    from tracer.core import _speedups

    direct: Any = probe_module.compiled_float_stats()
    assert direct is not None
    torch.manual_seed(0)
    for x in (torch.randn(32, 64), torch.randn(7, dtype=torch.float64), torch.tensor(2.5)):
        itemsize = x.element_size()
        assert direct(x) == _speedups.float_stats(x.data_ptr(), x.numel(), itemsize)
    base = torch.randn(10, 10)
    assert direct(base[2:5]) == _speedups.float_stats(base[2:5].data_ptr(), 30, 4)  # offset view
    # Transposed, the same elements in the same memory: read as they lie.
    assert direct(base.t()) == _speedups.float_stats(base.data_ptr(), 100, 4)
    for other in (
        base[:, :5],  # gaps between the rows, each row too short to be read on its own
        torch.randn(1, 4).expand(3, 4),  # elements repeated
        base.half(),
        torch.arange(5),
        torch.empty(0),
        nn.Parameter(torch.randn(3)),  # a subclass: the collector's general path
        torch.empty(3, device="meta"),
        torch.randn(3, 3).to_sparse(),
        torch.randn(4)._neg_view(),  # its memory holds the values' negatives
        "not a tensor",
    ):
        assert direct(other) is None


@st.composite
def _views_with_gaps(draw: st.DrawFn) -> torch.Tensor:
    """A view whose elements leave gaps in memory (a slice, a split's part, then maybe
    permuted), with contiguous runs of at least 8 elements, some values not finite."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    inner = draw(st.integers(8, 40))
    outer = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    base = torch.randn(*outer, inner + draw(st.integers(1, 9)), dtype=dtype) * draw(
        st.sampled_from([1.0, 1e-3, 1e4])
    )
    flat = base.view(-1)
    for _ in range(draw(st.integers(0, 3))):
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1.0])
        )
    start = draw(st.integers(0, base.shape[-1] - inner))
    view = base[..., start : start + inner]
    if view.dim() > 1 and draw(st.booleans()):  # every other row of the first dimension
        view = view[:: draw(st.integers(1, 2))]
    order = draw(st.permutations(range(view.dim())))
    return view.permute(*order)


@pytest.mark.needs_extension("probe", "speedups")
@settings(max_examples=200, deadline=None)
@given(_views_with_gaps())
def test_compiled_float_stats_reads_views_with_gaps_run_by_run(x: torch.Tensor) -> None:
    # The same statistics as the view's contiguous copy: counts and extremes exactly, sums to
    # the rounding of the float32 lanes (each run is summed on its own, then merged).
    from tracer.core import _speedups

    direct: Any = probe_module.compiled_float_stats()
    got = direct(x)
    copy = x.contiguous()
    want = _speedups.float_stats(copy.data_ptr(), copy.numel(), copy.element_size())
    assert got is not None
    rel = 1e-5 if x.dtype == torch.float32 else 1e-12
    scale = want[Stat.L1]  # a sum's rounding is relative to the magnitudes it adds up
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if i in _EXACT:
            assert a == b or (math.isnan(a) and math.isnan(b)), i
        else:
            assert a == pytest.approx(b, rel=rel, abs=rel * max(1.0, scale)), i


_EXACT = {
    Stat.NUMEL,
    Stat.FINITE,
    Stat.NAN,
    Stat.NONZERO,
    Stat.MIN,
    Stat.MAX,
    Stat.NEAR_ZERO,
    Stat.NEAR_ONE,
}


@pytest.mark.needs_extension("probe", "speedups")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("rows", "width", "kept"),
    [
        (3000, 50, 40),  # short runs, copied into blocks: several blocks, the last one partial
        (2048, 16, 8),  # the shortest runs read this way: exactly full blocks
        (12, 6000, 5000),  # runs too long to copy: each read where it lies
    ],
)
def test_compiled_float_stats_of_many_runs_matches_the_copy(
    dtype: torch.dtype, rows: int, width: int, kept: int
) -> None:
    from tracer.core import _speedups

    torch.manual_seed(rows)
    base = torch.randn(rows, width, dtype=dtype) * 3 + 1
    base[rows - 1, 0] = float("nan")  # in the last run: the careful pass of the last block
    base[rows // 2, 1] = float("inf")
    base[1, 2] = 0.0
    view = base[:, :kept]
    got = probe_module.compiled_float_stats()(view)  # type: ignore[misc]
    copy = view.contiguous()
    want = _speedups.float_stats(copy.data_ptr(), copy.numel(), copy.element_size())
    rel = 1e-5 if dtype == torch.float32 else 1e-12
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if i in _EXACT:
            assert a == b or (math.isnan(a) and math.isnan(b)), i
        else:
            assert a == pytest.approx(b, rel=rel, abs=rel * want[Stat.L1]), i
    assert got[Stat.NUMEL] == rows * kept and got[Stat.NAN] == 1


@pytest.mark.needs_extension("probe", "speedups")
def test_compiled_float_stats_refuses_what_it_cannot_read_run_by_run() -> None:
    direct: Any = probe_module.compiled_float_stats()
    base = torch.randn(6, 40)
    assert direct(base[:, :20]) is not None  # the control: runs of 20
    for refused in (
        base[:, :7],  # runs shorter than 8 elements: copied by the general path
        base[:, ::2],  # no stride-1 dimension at all
        torch.randn(1, 40).expand(3, 40),  # rows repeated (stride 0)
        base.as_strided((4, 16), (8, 1)),  # rows overlapping each other
        torch.randn(70_000, 16)[:, :8],  # more runs than one pass merges
    ):
        assert direct(refused) is None


def test_a_traced_split_records_the_statistics_of_its_parts() -> None:
    # Each part of a split leaves gaps in memory: the trace reads it where it lies, with the
    # statistics of the part itself.
    class Split(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(x.split(16, dim=-1))

    torch.manual_seed(3)
    x = torch.randn(4, 5, 48)
    with tracer.trace(Split()) as t:
        parts = t.model(x)
    (call,) = t.calls
    for record, part in zip(call.outputs, parts, strict=True):
        assert record.stats["mean"] == pytest.approx(part.double().mean().item(), rel=1e-5)
        assert record.stats["min"] == part.min().item() and record.stats["max"] == part.max().item()
        assert record.stats["std"] == pytest.approx(part.double().std().item(), rel=1e-5)
    assert t.internal_errors == 0


@pytest.mark.parametrize("extra", [False, True])
def test_collector_statistics_are_the_same_with_and_without_the_compiled_path(
    extra: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracer.core.collector import StatsCollector

    extras = {"first": lambda t: float(t.reshape(-1)[0])} if extra else None
    torch.manual_seed(1)
    base = torch.randn(6, 8)
    tensors = [base, base[1:3], base.t(), base.double(), base.half(), torch.arange(6)]
    tensors += [nn.Parameter(torch.randn(4)), torch.tensor([1.0, float("nan"), float("inf")])]

    def collect() -> list[dict[str, float]]:
        collector = StatsCollector(extras)
        indices = [collector.request(t) for t in tensors]
        stats = collector.flush()
        return [dict(stats.get(i)) for i in indices]

    with_direct = collect()
    monkeypatch.setattr(probe_module, "_float_stats", None)
    assert probe_module.compiled_float_stats() is None
    without = collect()
    assert repr(with_direct) == repr(without)  # NaN statistics compare equal as text


BIG = 3 * (1 << 20) + 5  # over the size that is split over torch's threads, unevenly


def _big_cases() -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    cases = {
        "randn": torch.randn(BIG),
        "offset mean": torch.randn(BIG) * 1e-3 + 1e4,  # the spread must not cancel away
        "constant": torch.full((BIG,), 2.5),
        "float64": torch.randn(BIG, dtype=torch.float64),
        "transposed": torch.randn(1024, BIG // 1024).t(),
    }
    first_nan = torch.randn(BIG)
    first_nan[:1000] = float("nan")  # the careful pass in one chunk, the fast one elsewhere
    first_nan[-1] = float("inf")
    cases["nan in one chunk"] = first_nan
    half_nan = torch.randn(BIG)
    half_nan[: BIG // 2 + 10] = float("nan")  # a chunk with no finite value at all
    cases["a chunk all nan"] = half_nan
    all_nan = torch.full((BIG,), float("nan"))
    cases["all nan"] = all_nan
    return cases


@pytest.mark.needs_extension("probe")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", list(_big_cases()))
def test_compiled_float_stats_of_big_tensors_match_the_reference(case: str, threads: int) -> None:
    from core.reference import reference_stats

    from tracer.core.stats import stats_from_kernel

    x = _big_cases()[case]
    direct: Any = probe_module.compiled_float_stats()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = stats_from_kernel(direct(x))
    finally:
        torch.set_num_threads(before)
    want = reference_stats(x)
    assert set(got) == set(want)
    for key, value in want.items():
        if value != value:
            assert got[key] != got[key], key
        else:
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


_SMALL_DTYPES = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]


@st.composite
def _small_tensors(draw: Any) -> torch.Tensor:
    """An empty, integer or bool tensor: whole, a slice, a transposed view, or all zeros."""
    dtype = draw(st.sampled_from([*_SMALL_DTYPES, torch.float32]))
    rows, cols = draw(st.integers(0, 9)), draw(st.integers(0, 40))
    if dtype is torch.bool:
        x = torch.rand(rows, cols) < draw(st.floats(0, 1))
    elif dtype is torch.float32:
        x = torch.empty(rows, 0)  # floats reach this path only when empty
    else:
        info = torch.iinfo(dtype)
        low = draw(st.sampled_from([info.min, -5, 0]))
        high = draw(st.sampled_from([info.max, 7, 1]))
        x = torch.randint(max(low, info.min), high, (rows, cols), dtype=dtype)
        if x.numel() and draw(st.booleans()):
            x.view(-1)[draw(st.integers(0, x.numel() - 1))] = high  # the type's extreme too
    view = draw(st.sampled_from(["whole", "slice", "transposed", "zeros"]))
    if view == "slice" and rows > 2:
        return x[1:-1]
    if view == "transposed":
        return x.t()
    if view == "zeros":
        return torch.zeros_like(x)
    return x


@pytest.mark.needs_extension("probe")
@settings(max_examples=200, deadline=None)
@given(st.lists(_small_tensors(), min_size=1, max_size=6))
def test_compiled_request_gives_small_tensors_the_python_statistics(
    tensors: list[torch.Tensor],
) -> None:
    # Empty tensors and contiguous integer or bool ones are taken whole by the compiled
    # request (the integer pass, packed into a vector's space); their statistics are those of
    # the Python path, value for value, and a tensor seen twice keeps its index.
    from tracer.core.collector import _SMALL, StatsCollector

    def collect(compiled: bool) -> tuple[list[dict[str, float]], list[int], list[int]]:
        collector = StatsCollector()
        assert collector._fast is not None
        request = collector.request if compiled else collector._request
        indices = [request(t) for t in [*tensors, *tensors]]
        groups = [collector._group[i] for i in indices]
        stats = collector.flush()
        return [dict(stats.get(i)) for i in indices], indices, groups

    fast, fast_indices, groups = collect(True)
    slow, slow_indices, _ = collect(False)
    assert fast == slow
    assert fast_indices == slow_indices
    for t, group in zip(tensors, groups, strict=False):
        takes = t.numel() == 0 or (t.dtype in _SMALL_DTYPES and t.is_contiguous())
        assert (group == _SMALL) is takes, (t.dtype, t.shape, t.stride())


@pytest.mark.needs_extension("probe")
def test_compiled_small_statistics_stop_where_the_python_path_reads_in_chunks() -> None:
    from tracer.core import _probe  # type: ignore[attr-defined]
    from tracer.core.collector import _SMALL, StatsCollector
    from tracer.core.stats import BIG_NUMEL, tensor_stats

    assert _probe.SMALL_LIMIT == BIG_NUMEL
    collector = StatsCollector()
    at_limit = torch.arange(BIG_NUMEL, dtype=torch.int32) % 5 - 2
    over = torch.ones(BIG_NUMEL + 1, dtype=torch.int64)
    extremes = torch.tensor([2**62 + 1, -(2**63), 2**63 - 1, 0])  # beyond a double's precision
    indices = [collector.request(t) for t in (at_limit, over, extremes)]
    groups = [collector._group[i] for i in indices]
    stats = collector.flush()
    assert groups[0] == _SMALL and groups[1] != _SMALL and groups[2] == _SMALL
    for t, i in zip((at_limit, over, extremes), indices, strict=True):
        assert stats.get(i) == tensor_stats(t)
