"""The compiled one-pass statistics kernel against a float64 reference, edge by edge."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from core.reference import reference_stats
from hypothesis import given, settings
from hypothesis import strategies as st

import tracer
from tracer.core import stats
from tracer.core.stats import kernel_vector, stats_from_kernel
from tracer.core.stats_layout import SIZE, Stat

# The kernel's inner loop runs 8 lanes (16 in the 512-bit pass's float32) and folds them into
# double totals every 256 rounds: sizes around both boundaries, and ones spanning several folds
# with a tail.
SIZES = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 255, 2047, 2048, 2049, 4095, 4096, 4097]
SIZES += [8 * 256 * 3 + 7, 16 * 256 * 2 + 15]
#: Skipped without the compiled kernel (failed under $TRACER_REQUIRE_EXTENSIONS).
pytestmark = pytest.mark.needs_extension("speedups")


def _widths() -> list[int]:
    """The fast passes this machine can run: 256-bit always, 512-bit where the CPU has AVX-512."""
    try:
        from tracer.core import _speedups
    except ImportError:
        return [256]
    start = _speedups.width()
    widths = [256]
    try:
        _speedups.set_width(512)
        widths.append(512)
    except ValueError:
        pass
    _speedups.set_width(start)
    return widths


@pytest.fixture(autouse=True, params=_widths(), ids=lambda bits: f"{bits}bit")
def kernel_width(request: pytest.FixtureRequest) -> Iterator[int]:
    """Every kernel test runs on each fast pass this CPU has."""
    try:
        from tracer.core import _speedups
    except ImportError:  # the test skips (needs_extension)
        yield request.param
        return
    start = _speedups.width()
    _speedups.set_width(request.param)
    try:
        yield request.param
    finally:
        _speedups.set_width(start)


def _kernel_stats(x: torch.Tensor) -> dict[str, float]:
    vector = kernel_vector(x)
    assert vector is not None
    assert len(vector) == SIZE and vector[0] == x.numel()
    return stats_from_kernel(vector)


def _assert_matches(x: torch.Tensor, rel: float = 1e-5) -> None:
    got, want = _kernel_stats(x), reference_stats(x)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=rel, abs=rel), key


def test_kernel_is_built() -> None:
    assert stats.kernel_available()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", SIZES)
def test_kernel_matches_reference_at_lane_and_fold_boundaries(n: int, dtype: torch.dtype) -> None:
    torch.manual_seed(n)
    x = (torch.randn(n, dtype=dtype) * 2 - 0.3).to(dtype)
    x[:: max(1, n // 5)] = 0.0
    if n > 3:
        x[3] = -0.0  # a negative zero is a zero
    x[-1] = 7.5  # the tail holds the maximum
    _assert_matches(x)


@pytest.mark.parametrize("where", [0, 5, 16, 4096, -1])
def test_kernel_counts_nan_and_inf_anywhere_and_reduces_the_rest(where: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(4097 + 16)
    x[where] = math.nan
    x[(where + 9) % x.numel()] = math.inf
    x[(where + 33) % x.numel()] = -math.inf
    got = _kernel_stats(x)
    assert got["nan_count"] == 1 and got["inf_count"] == 2
    _assert_matches(x)


def test_kernel_all_non_finite_gives_counts_only() -> None:
    x = torch.tensor([math.nan, math.inf, -math.inf, math.nan])
    assert _kernel_stats(x) == {"numel": 4, "nan_count": 2, "inf_count": 2}


def test_kernel_finite_values_whose_float32_squares_overflow() -> None:
    x = torch.full((100,), 1e20)
    x[::2] = -3e20
    _assert_matches(x)  # the float32 lanes overflow; the double pass does not
    assert math.isfinite(_kernel_stats(x)["l2"])


def test_kernel_keeps_a_small_spread_around_a_large_mean() -> None:
    torch.manual_seed(2)
    x = (10_000 + torch.randn(50_000, dtype=torch.float64) * 1e-3).float()
    assert _kernel_stats(x)["std"] == pytest.approx(reference_stats(x)["std"], rel=1e-4)
    constant = torch.full((4100,), 3.25)
    got = _kernel_stats(constant)
    assert got["std"] == 0.0 and got["mean"] == 3.25 and got["zero_frac"] == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [10_000, 1_000_000, 3 * (1 << 20) + 1])
@pytest.mark.parametrize("first", [1e2, 1e4, 1e5, -1e7])
def test_kernel_spread_and_mean_of_a_first_value_far_from_the_rest(
    first: float, n: int, dtype: torch.dtype
) -> None:
    """The pass sums distances to the first value: an outlier there (or a first cluster far from
    the rest) made those sums so large that the spread cancelled away (a spread of 0 for one
    value of 1e4 before a million of +-0.001). Sums are then as good as the float32 lanes make
    them anywhere (about 1e-5 of the summed distances)."""
    x = torch.full((n,), 0.001, dtype=dtype)
    x[1::2] = -0.001
    x[0] = first
    _assert_matches(x, rel=1e-4)
    clusters = torch.cat([torch.full((n // 1000,), first), torch.randn(n - n // 1000)]).to(dtype)
    _assert_matches(clusters, rel=1e-4)


@st.composite
def _clustered(draw: st.DrawFn) -> torch.Tensor:
    """Values around a centre, some of them (at the ends, in a run, or spread) far away."""
    n = draw(st.integers(2, 6000))
    torch.manual_seed(draw(st.integers(0, 2**31)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    x = torch.randn(n, dtype=torch.float64) * 10 ** draw(st.integers(-4, 3))
    x += draw(st.sampled_from([0.0, 1.0, -250.0, 1e4]))
    far = draw(st.sampled_from([1e2, -1e3, 1e5, 1e7]))
    where = draw(st.sampled_from(["first", "last", "both ends", "a run", "scattered"]))
    count = draw(st.integers(1, max(1, n // 10)))
    if where == "first":
        x[:count] = far
    elif where == "last":
        x[-count:] = far
    elif where == "both ends":
        x[0], x[-1] = far, -far
    elif where == "a run":
        start = draw(st.integers(0, n - count))
        x[start : start + count] = far
    else:
        x[torch.randperm(n)[:count]] = far
    return x.to(dtype)


@settings(max_examples=300, deadline=None)
@given(_clustered())
def test_kernel_spread_and_mean_wherever_the_far_values_lie(x: torch.Tensor) -> None:
    """The spread within 1e-3 of itself and the mean within 1e-3 of the spread, whatever the
    shift: what the float32 lanes guarantee once it lies within a few spreads of the mean."""
    got, want = _kernel_stats(x), reference_stats(x)
    n = x.numel()
    spread = want["std"] * math.sqrt((n - 1) / n)  # over n, as the kernel keeps it
    got_spread = got["std"] * math.sqrt((n - 1) / n)
    scale = max(abs(want["min"]), abs(want["max"]))
    assert got_spread == pytest.approx(spread, rel=1e-3, abs=1e-6 * scale)
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-6, abs=1e-3 * spread + 1e-7 * scale)
    assert (got["min"], got["max"]) == (want["min"], want["max"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kernel_vector_upcasts_half_precision(dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    x = (torch.randn(3000) * 300).to(dtype)
    _assert_matches(x, rel=1e-4)


def test_kernel_vector_reads_strided_tensors_in_memory_order() -> None:
    torch.manual_seed(4)
    base = torch.randn(50, 70, 9)
    _assert_matches(base.transpose(0, 1))  # reordered to memory order, no copy
    _assert_matches(base[:, ::2])  # not dense: copied first
    _assert_matches(torch.randn(33).expand(4, 33))  # a zero stride: every row counts


def test_kernel_rejects_bad_arguments_with_errors_not_crashes() -> None:
    from tracer.core import _speedups

    x = torch.randn(8)
    with pytest.raises(ValueError, match="numel > 0"):
        _speedups.float_stats(x.data_ptr(), 0, 4)
    with pytest.raises(ValueError, match="itemsize"):
        _speedups.float_stats(x.data_ptr(), 8, 2)
    with pytest.raises(ValueError, match="non-null"):
        _speedups.float_stats(0, 8, 4)
    with pytest.raises(TypeError):
        _speedups.float_stats(x.data_ptr(), 8)


def test_a_trace_without_the_kernel_says_so_in_its_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with tracer.trace(model) as t:
        model(torch.randn(2, 4))
    assert not any("compiled kernel" in note for note in t.notes)
    monkeypatch.setattr(stats, "_float_stats", None)
    with tracer.trace(model) as t:
        model(torch.randn(2, 4))
    assert any("compiled kernel" in note for note in t.notes)
    relu = t.flow(0)[2].outputs[0].stats  # the torch path still gives statistics
    assert relu["min"] >= 0 and relu["std"] > 0
    with tracer.trace(model, stats=False) as t:
        model(torch.randn(2, 4))
    assert not any("compiled kernel" in note for note in t.notes)


@pytest.mark.parametrize("poison", [None, "nan", "inf"])
def test_kernel_big_arrays_with_extremes_far_apart(poison: str | None) -> None:
    """A big array's extremes, zeros and non-finite values all count, wherever they are."""
    torch.manual_seed(5)
    x = torch.randn(3 * (1 << 19) + 5) + 0.25
    x[-1] = 40.0  # the maximum in the last part
    x[(1 << 19) + 7] = -30.0  # the minimum in the second
    x[: 1 << 19] = 0.0  # the first part all zeros: zero_frac spans the parts
    if poison is not None:
        x[2 * (1 << 19) + 3] = math.nan if poison == "nan" else math.inf
    got = _kernel_stats(x)
    assert got["max"] == 40.0 and got["min"] == -30.0
    _assert_matches(x)


def test_the_wide_and_narrow_passes_agree(kernel_width: int) -> None:
    """Where the CPU has the 512-bit pass: counts, extremes and NaN/Inf handling are the same as
    the 256-bit pass's, sums and norms agree to float32 rounding."""
    if kernel_width != 256 or 512 not in _widths():
        pytest.skip("one pass to compare with: runs once, where the CPU has both")
    from tracer.core import _speedups

    torch.manual_seed(5)
    band = [0.01, -0.01, 0.99, 1.01, -1.0, 0.0, 0.0100001, 0.98999]
    cases = []
    for n in (1, 15, 16, 17, 33, 4095, 4097, 70_001):
        for dtype in (torch.float32, torch.float64):
            x = torch.randn(n, dtype=dtype)
            picked = x[:: max(1, n // 9)]
            picked.copy_(torch.tensor(band * (n // 8 + 1), dtype=dtype)[: picked.numel()])
            cases.append(x)
            cases.append(x * 1e4 + 3e5)  # a large mean
    poisoned = torch.randn(5000)
    poisoned[17], poisoned[4001] = math.nan, -math.inf
    cases.append(poisoned)
    inexact = (Stat.SUM, Stat.SPREAD, Stat.L2, Stat.L1)
    for x in cases:
        _speedups.set_width(256)
        narrow = kernel_vector(x)
        _speedups.set_width(512)
        wide = kernel_vector(x)
        assert narrow is not None and wide is not None
        for stat in Stat:
            if stat in inexact:
                assert wide[stat] == pytest.approx(narrow[stat], rel=1e-5, abs=1e-6), stat.name
            else:
                assert wide[stat] == narrow[stat], stat.name
    _speedups.set_width(256)
