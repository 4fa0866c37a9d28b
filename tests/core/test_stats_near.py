"""near_zero_frac and near_one_frac: every statistics path counts the same values at the bands'
edges, against a direct float64 computation on the values as stored."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import tracer
import tracer.core.stats
from tracer.core.collector import StatsCollector
from tracer.core.stats import (
    BIG_NUMEL,
    SMALL_NUMEL,
    big_stats,
    chunked_vector,
    device_vector,
    kernel_vector,
    stats_from_kernel,
    stats_from_vector,
    tensor_stats,
    torch_vector,
)
from tracer.core.stats_layout import NEAR_BAND, NEAR_ONE_HIGH, NEAR_ONE_LOW
from tracer.records import BUILTIN_STATS

HEADER = Path(tracer.core.stats.__file__).with_name("stats_layout.h")
KEYS = ("near_zero_frac", "near_one_frac")
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def direct(x: torch.Tensor) -> dict[str, float]:
    """The two fractions computed the obvious way: float64, over the finite values."""
    d = x.double().reshape(-1)
    a = d[torch.isfinite(d)].abs()
    if not a.numel():
        return {}
    near_one = (a >= 0.99) & (a <= 1.01)
    return {
        "near_zero_frac": (a <= 0.01).sum().item() / a.numel(),
        "near_one_frac": near_one.sum().item() / a.numel(),
    }


def edges(dtype: torch.dtype) -> torch.Tensor:
    """Each bound of the two bands as ``dtype`` rounds it, its neighbours on both sides, -1,
    1, 0 and values well inside and outside, with both signs."""
    bounds = torch.tensor([0.01, 0.99, 1.01, 1.0], dtype=dtype)
    up = torch.nextafter(bounds, torch.full_like(bounds, math.inf))
    down = torch.nextafter(bounds, torch.full_like(bounds, -math.inf))
    inside = torch.tensor([0.0, 1e-30, 0.005, 0.995, 1.005], dtype=dtype)
    outside = torch.tensor([0.02, 0.5, 0.98, 1.02, 3.0, 1e4], dtype=dtype)
    values = torch.cat([bounds, up, down, inside, outside])
    return torch.cat([values, -values])


def sample(dtype: torch.dtype, n: int, *, non_finite: bool = False, seed: int = 0) -> torch.Tensor:
    """``n`` values: the edges in every part of the tensor, the rest random (some in the bands),
    shuffled; with ``non_finite``, NaN, +Inf and -Inf among them."""
    generator = torch.Generator().manual_seed(seed)
    base = edges(dtype)
    repeats = max(1, n // (8 * base.numel()))
    filler = torch.randn(n, generator=generator, dtype=torch.float64) * 1.2
    filler[: repeats * base.numel()] = base.double().repeat(repeats)
    x = filler.to(dtype)
    if non_finite:
        x[1::97] = math.nan
        x[5::101] = math.inf
        x[9::103] = -math.inf
    return x[torch.randperm(n, generator=generator)].contiguous()


def _collected(x: torch.Tensor, **options: bool) -> dict[str, float]:
    collector = StatsCollector(**options)
    index = collector.request(x)
    return collector.flush().get(index)


def _assert_same_counts(got: dict[str, float], want: dict[str, float], where: str) -> None:
    """The two fractions equal: they are counts divided by the same count, never approximate."""
    assert {k: got[k] for k in KEYS if k in got} == want, where


def test_near_band_constants_agree_in_python_and_the_c_header() -> None:
    text = HEADER.read_text()
    defined = dict(re.findall(r"#define TRACER_(NEAR_\w+) ([0-9.]+)", text))
    assert defined == {"NEAR_BAND": "0.01", "NEAR_ONE_LOW": "0.99", "NEAR_ONE_HIGH": "1.01"}
    assert (NEAR_BAND, NEAR_ONE_LOW, NEAR_ONE_HIGH) == (0.01, 0.99, 1.01)
    assert (1 - NEAR_BAND, 1 + NEAR_BAND) == (NEAR_ONE_LOW, NEAR_ONE_HIGH)


def test_near_band_bounds_round_to_the_side_that_keeps_float32_compares_exact() -> None:
    # torch compares a float32 tensor with a Python number in float32: exact only because
    # each float32 bound lies on the band's side of the real bound.
    as_f32 = torch.tensor([NEAR_BAND, NEAR_ONE_LOW, NEAR_ONE_HIGH]).tolist()
    assert as_f32[0] <= NEAR_BAND and as_f32[1] >= NEAR_ONE_LOW and as_f32[2] <= NEAR_ONE_HIGH


def test_near_fractions_are_builtin_float_statistics() -> None:
    assert BUILTIN_STATS[-2:] == KEYS
    got = tensor_stats(torch.tensor([0.0, 0.01, 0.5, -1.0]))
    assert (got["near_zero_frac"], got["near_one_frac"]) == (0.5, 0.25)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("non_finite", [False, True], ids=["finite", "nan-inf"])
def test_near_fractions_every_small_tensor_path_agrees_at_the_edges(
    dtype: torch.dtype,
    non_finite: bool,
    need_extension: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_extension("speedups")
    need_extension("probe")
    from tracer.core._probe import float_stats as probe_float_stats

    x = sample(dtype, 3000, non_finite=non_finite)
    assert x.numel() <= SMALL_NUMEL
    want = direct(x)
    assert 0 < want["near_zero_frac"] < 1 and 0 < want["near_one_frac"] < 1
    got: dict[str, dict[str, float]] = {}
    vector = kernel_vector(x)
    assert vector is not None
    got["compiled kernel"] = stats_from_kernel(vector)
    if dtype in (torch.float32, torch.float64):
        got["compiled probe"] = stats_from_kernel(probe_float_stats(x))
    got["collector, compiled"] = _collected(x)
    got["collector, device vectors"] = _collected(x, defer_cpu=True)
    kind, on_device = device_vector(x)
    got["device vector"] = stats_from_vector(kind, x.numel(), on_device.tolist())
    wide = x if dtype in (torch.float32, torch.float64) else x.float()
    got["careful torch vector"] = stats_from_kernel(torch_vector(wide))
    if not non_finite:
        chunked = chunked_vector(wide)
        assert chunked is not None
        got["chunked torch sums"] = stats_from_kernel(chunked)
    monkeypatch.setattr(tracer.core.stats, "_float_stats", None)  # as built without a compiler
    got["torch reductions"] = tensor_stats(x)
    got["strided, torch reductions"] = tensor_stats(torch.stack([x, x], 1)[:, 0])
    collector = StatsCollector()
    index = collector.request(x)
    assert collector._buffers, "the tensor did not go to a row buffer"
    got["row buffer"] = collector.flush().get(index)
    for path, stats in got.items():
        _assert_same_counts(stats, want, path)


def test_near_fractions_row_buffer_keeps_rows_apart(torch_stats_path: None) -> None:
    rows = [torch.full((64,), value) for value in (0.0, 1.0, -0.99, 0.5)]
    rows.append(torch.tensor([0.01, 1.01] * 32))
    collector = StatsCollector()
    indices = [collector.request(row) for row in rows]
    assert len(collector._buffers) == 1
    step = collector.flush()
    got = [(step.get(i)["near_zero_frac"], step.get(i)["near_one_frac"]) for i in indices]
    assert got == [(1.0, 0.0), (0.0, 1.0), (0.0, 1.0), (0.0, 0.0), (0.5, 0.5)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_near_fractions_compiled_threads_merge_their_counts(
    dtype: torch.dtype, need_extension: Callable[[str], None]
) -> None:
    need_extension("probe")
    from tracer.core._probe import float_stats as probe_float_stats

    x = sample(dtype, BIG_NUMEL * 3 + 5, non_finite=True)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threaded = probe_float_stats(x)  # split over torch's threads, merged in C++
    finally:
        torch.set_num_threads(before)
    _assert_same_counts(stats_from_kernel(threaded), direct(x), "threaded probe")


#: Big tensors (more than BIG_NUMEL elements) for each way a big tensor is read.
BIG: dict[str, Callable[[int], torch.Tensor]] = {
    "float32": lambda n: sample(torch.float32, n),
    "float32 with nan and inf": lambda n: sample(torch.float32, n, non_finite=True),
    "float16, converted a chunk at a time": lambda n: sample(torch.float16, n),
    "bfloat16 with nan and inf": lambda n: sample(torch.bfloat16, n, non_finite=True),
    "float64 strided": lambda n: torch.stack([sample(torch.float64, n), torch.ones(n)], 1)[:, 0],
    "float32 expanded": lambda n: sample(torch.float32, n // 4).reshape(1, -1).expand(4, -1),
}


@pytest.mark.parametrize("case", list(BIG))
def test_near_fractions_big_tensors_read_in_chunks_agree(case: str, stats_path: str) -> None:
    x = BIG[case](BIG_NUMEL + 4099)
    assert x.numel() > BIG_NUMEL
    want = direct(x)
    _assert_same_counts(tensor_stats(x), want, "tensor_stats")
    _assert_same_counts(big_stats(x), want, "big_stats")
    _assert_same_counts(_collected(x), want, "collector")
    _assert_same_counts(_collected(x, defer_cpu=True), want, "device chunks")


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_near_fractions_absent_without_finite_values(dtype: torch.dtype, stats_path: str) -> None:
    for x in (torch.empty(0, dtype=dtype), torch.full((5,), math.nan, dtype=dtype)):
        for got in (tensor_stats(x), _collected(x), _collected(x, defer_cpu=True)):
            assert not set(KEYS) & set(got), got


@pytest.mark.parametrize(
    "x", [torch.tensor([0, 1, -1, 2]), torch.tensor([True, False])], ids=["int64", "bool"]
)
def test_near_fractions_are_for_float_tensors_only(x: torch.Tensor, stats_path: str) -> None:
    for got in (tensor_stats(x), _collected(x), _collected(x, defer_cpu=True)):
        assert not set(KEYS) & set(got), got


def test_near_fractions_of_a_memoryless_zero_tensor(stats_path: str) -> None:
    from tracer.core.torch_compat import is_zerotensor

    x = torch._efficientzerotensor(BIG_NUMEL + 3)
    assert is_zerotensor(x)
    got = _collected(x)
    assert (got["near_zero_frac"], got["near_one_frac"]) == (1.0, 0.0)


def test_near_fractions_tell_a_saturated_sigmoid_from_a_spread_one() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 64), nn.Sigmoid(), nn.Tanh())
    with torch.no_grad():
        net[0].weight.mul_(200)  # pushes the pre-activations far out: sigmoid pinned at 0 and 1
    with tracer.trace(net) as t:
        net(torch.randn(32, 16))
        t.step()
    sigmoid = next(c for c in t.calls if c.type == "Sigmoid").outputs[0].stats
    tanh = next(c for c in t.calls if c.type == "Tanh").outputs[0].stats
    assert sigmoid["near_zero_frac"] + sigmoid["near_one_frac"] > 0.9
    assert tanh["near_one_frac"] < 0.1  # tanh of values in [0, 1] spreads over [0, 0.77]
