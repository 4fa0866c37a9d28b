"""Statistics right for every dtype, batched small tensors, deduplication and extra statistics."""

from __future__ import annotations

import math

import pytest
import torch
from core.reference import reference_stats
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tracer
from tracer.core.collector import StatsCollector
from tracer.core.stats import CHUNK, SMALL_NUMEL, register_stat, tensor_stats, unregister_stat
from tracer.records import BUILTIN_STATS

# Every test here runs on both statistics paths: the compiled kernel and torch alone.
pytestmark = pytest.mark.usefixtures("stats_path")


def _assert_close(got: dict[str, float], want: dict[str, float], rel: float) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=rel, abs=rel), key


def _collected(x: torch.Tensor) -> dict[str, float]:
    collector = StatsCollector()
    index = collector.request(x)
    return collector.flush().get(index)


@pytest.mark.parametrize("numel", [7, SMALL_NUMEL, SMALL_NUMEL * 4, CHUNK * 2 + 10])
def test_stats_float32_match_float64_reference_small_and_big(numel: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(numel) * 3 + 0.5
    x[::5] = 0
    x = x if numel < CHUNK else x.view(-1, 2).t()  # a transposed big tensor: reordered first
    _assert_close(_collected(x), reference_stats(x), rel=1e-5)
    _assert_close(tensor_stats(x), reference_stats(x), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_stats_half_precision_upcast_before_reducing(dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    x = (torch.randn(50_000) * 100).to(dtype)  # float16 sums would overflow without upcasting
    want = reference_stats(x)
    _assert_close(tensor_stats(x), want, rel=1e-5)
    _assert_close(_collected(x[:100]), reference_stats(x[:100]), rel=1e-5)


def test_stats_integer_tensors_get_count_range_and_mean() -> None:
    ids = torch.tensor([[0, 5, 9], [3, 0, 1]])
    assert tensor_stats(ids) == {"numel": 6, "mean": 3.0, "min": 0, "max": 9, "zero_frac": 2 / 6}
    assert tensor_stats(ids.to(torch.uint8))["max"] == 9


_INT_DTYPES = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(_INT_DTYPES),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=70),
    st.booleans(),
)
def test_stats_integer_tensors_the_same_on_both_paths(
    dtype: torch.dtype, values: list[int], strided: bool
) -> None:
    # The kernel's integer pass and torch's reductions: equal counts and extremes; the mean
    # exactly while the sum is exact in a double, else to its rounding.
    info = torch.iinfo(dtype)
    x = torch.tensor([min(max(v, info.min), info.max) for v in values], dtype=dtype)
    if strided and x.numel() > 2:
        x = x[::2]  # not contiguous: torch's reductions
    from tracer.core import stats

    got = tensor_stats(x)
    kernel = stats._int_stats
    stats._int_stats = None
    try:
        want = tensor_stats(x)
    finally:
        stats._int_stats = kernel
    assert set(got) == set(want) == {"numel", "mean", "min", "max", "zero_frac"}
    for key in ("numel", "min", "max", "zero_frac"):
        assert got[key] == want[key], key
    magnitude = sum(abs(int(v)) for v in x.tolist())
    if magnitude < 2**53:
        assert got["mean"] == want["mean"]
    else:
        # Summed in doubles in two orders: each sum is off by at most n * eps times the sum of
        # the magnitudes, each mean by eps times it, and near-cancelling extremes make that far
        # bigger than the mean itself.
        bound = 2 * 2**-52 * magnitude
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-12, abs=bound)


def test_stats_bool_gets_true_fraction() -> None:
    assert tensor_stats(torch.tensor([True, False, True, True])) == {"numel": 4, "true_frac": 0.75}


def test_stats_empty_and_zero_dim() -> None:
    assert tensor_stats(torch.zeros(0, 3)) == {"numel": 0}
    scalar = _collected(torch.tensor(2.5))
    assert scalar["numel"] == 1 and scalar["mean"] == 2.5 and scalar["std"] == 0.0
    assert scalar["min"] == scalar["max"] == 2.5


@pytest.mark.parametrize("numel", [10, SMALL_NUMEL * 2, CHUNK * 2 + 5])
def test_stats_nan_and_inf_counted_rest_over_finite_values(numel: int) -> None:
    x = torch.arange(numel, dtype=torch.float32)
    x[1], x[2], x[-1] = math.nan, math.inf, -math.inf
    got = _collected(x)
    assert got["nan_count"] == 1 and got["inf_count"] == 2
    _assert_close(got, reference_stats(x), rel=1e-6)
    all_nan = tensor_stats(torch.full((4,), math.nan))
    assert all_nan == {"numel": 4, "nan_count": 4, "inf_count": 0}


def test_stats_tensors_without_readable_values_get_numel_only() -> None:
    sparse = torch.eye(3).to_sparse()
    meta = torch.empty(4, 5, device="meta")
    quantized = torch.quantize_per_tensor(torch.randn(6), 0.1, 0, torch.quint8)
    complex_ = torch.randn(3, dtype=torch.complex64)
    for t, n in [(sparse, 9), (meta, 20), (quantized, 6), (complex_, 3)]:
        assert _collected(t) == {"numel": n}


def test_stats_large_mean_small_spread_keeps_std_precise() -> None:
    torch.manual_seed(3)
    x = 1000 + torch.randn(40_000, dtype=torch.float64).float() * 1e-3
    assert tensor_stats(x)["std"] == pytest.approx(reference_stats(x)["std"], rel=1e-4)
    assert _collected(x[:500])["std"] == pytest.approx(reference_stats(x[:500])["std"], rel=1e-4)


def test_stats_collector_dedups_by_identity_and_version_not_address() -> None:
    collector = StatsCollector()
    a = torch.randn(100)
    first = collector.request(a)
    assert collector.request(a) == first
    assert collector.request(a.view(10, 10)) == first  # same elements, same statistics
    assert collector.request(a[:50]) != first
    a.add_(1)  # in place: the cached statistics no longer describe it
    second = collector.request(a)
    assert second != first
    stats = collector.flush()
    assert stats.get(second)["mean"] == pytest.approx(stats.get(first)["mean"] + 1, rel=1e-5)


def test_stats_collector_freed_tensor_id_reuse_is_not_a_hit() -> None:
    collector = StatsCollector()
    refs = []
    for value in range(200):  # freed tensors' ids get reused by the next ones
        refs.append((value, collector.request(torch.full((8,), float(value)))))
    stats = collector.flush()
    assert all(stats.get(ref)["mean"] == value for value, ref in refs)


def test_stats_copy_at_hook_time_ignores_later_inplace_change() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    with tracer.trace(model) as t:
        model(torch.full((2, 4), -5.0) @ torch.eye(4))
    linear = t.flow(0)[1]
    relu = t.flow(0)[2]
    assert linear.outputs[0].stats["min"] < 0  # before ReLU overwrote it
    assert relu.outputs[0].stats["min"] >= 0


def test_stats_extra_statistics_per_trace_and_registered() -> None:
    model = nn.Linear(3, 3)
    register_stat("sum_sq", lambda t: float((t * t).sum()))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_stat("sum_sq", lambda t: 0.0)
        with pytest.raises(ValueError, match="built in"):
            register_stat("mean", lambda t: 0.0)
        extra = {"first": lambda t: float(t.reshape(-1)[0]), "broken": lambda t: 1 / 0}
        with tracer.trace(model, extra_stats=extra) as t:
            model(torch.ones(1, 3))
    finally:
        unregister_stat("sum_sq")
    stats = t.calls[0].inputs[0].stats
    assert stats["sum_sq"] == 3.0 and stats["first"] == 1.0 and "broken" not in stats
    assert set(BUILTIN_STATS) <= set(stats)


def test_stats_off_records_shapes_only() -> None:
    model = nn.Linear(3, 3)
    with tracer.trace(model, stats=False) as t:
        model(torch.ones(1, 3))
    out = t.calls[0].outputs[0]
    assert out.shape == (1, 3) and out.stats == {}


def test_stats_inference_mode_tensors_recorded_with_statistics() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with torch.inference_mode(), tracer.trace(model) as t:
        model(torch.ones(2, 4))
    assert all(r.shape == (2, 4) and "mean" in r.stats for c in t.calls for r in c.outputs)
    assert t.internal_errors == 0


@pytest.mark.usefixtures("probe_path")
def test_a_negated_view_has_the_statistics_of_its_values() -> None:
    torch.manual_seed(4)
    x = torch.randn(3, 50) + 0.5
    negated = x._neg_view()  # the memory holds x; the values are -x
    assert negated.is_neg()
    _assert_close(_collected(negated), reference_stats(-x), 1e-5)
    big = torch.randn(1 << 21) + 0.5  # the compiled split path declines it too
    _assert_close(_collected(big._neg_view()), reference_stats(-big), 1e-5)


@pytest.mark.usefixtures("probe_path")
def test_a_zero_tensor_without_memory_is_all_zeros() -> None:
    zero = torch._efficientzerotensor(4, 5)
    assert zero._is_zerotensor()
    _assert_close(_collected(zero), reference_stats(torch.zeros(4, 5)), 1e-9)


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.usefixtures("probe_path")
def test_nested_tensors_and_vmap_are_recorded_without_internal_errors() -> None:
    nested = torch.nested.nested_tensor([torch.randn(2), torch.randn(3)])
    with tracer.trace(_Identity()) as t:
        t.model(nested)
        t.step()
    assert t.internal_errors == 0
    (call,) = t.calls
    out = call.outputs[0]  # no single shape to record, but its dtype and device
    assert (out.shape, out.dtype, out.device) == ((), "float32", "cpu")
    assert out.stats["numel"] == 5

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    with tracer.trace(model) as t:
        torch.func.vmap(model)(torch.randn(5, 3))  # per-example tensors inside the hooks
        t.step()
    assert t.internal_errors == 0
    assert [(c.module, c.inputs[0].shape, c.outputs[0].shape) for c in t.calls] == [
        ("", (3,), (2,)),
        ("0", (3,), (2,)),
        ("1", (2,), (2,)),
    ]
    # Statistics of a per-example view would need values that only exist batched.
    assert all(set(r.stats) == {"numel"} for c in t.calls for r in c.tensors)
