"""One statistics vector layout: the C header, the Python enum and every statistics path agree."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from core.reference import reference_stats

import tracer.core.stats
from tracer.core import stats_layout
from tracer.core.collector import StatsCollector
from tracer.core.stats import (
    BIG_NUMEL,
    SMALL_NUMEL,
    chunked_vector,
    device_vector,
    kernel_vector,
    stats_from_kernel,
    stats_from_vector,
    tensor_stats,
    torch_vector,
)
from tracer.core.stats_layout import LAYOUT, SIZE, Stat

HEADER = Path(tracer.core.stats.__file__).with_name("stats_layout.h")

#: Tensors whose statistics every float path must agree on.
CASES: dict[str, Callable[[], torch.Tensor]] = {
    "float32": lambda: torch.randn(3000) * 3 + 1,
    "float64 matrix": lambda: torch.randn(40, 50, dtype=torch.float64),
    "mean far from zero": lambda: torch.randn(5000) * 1e-3 + 1000.0,
    "nan and inf": lambda: torch.tensor(
        [1.0, float("nan"), -2.0, float("inf"), 0.0, -float("inf")]
    ),
    "all nan": lambda: torch.full((7,), float("nan")),
    "zeros": lambda: torch.zeros(33),
    "one value": lambda: torch.tensor([2.5]),
    "float16": lambda: (torch.randn(2000) * 50).half(),
    "bfloat16": lambda: torch.randn(2000).bfloat16(),
    "transposed": lambda: torch.randn(30, 70).t(),
    "an outlier first": lambda: torch.cat([torch.tensor([1e5]), torch.randn(16000) * 1e-3]),
    "two far clusters": lambda: torch.cat([torch.full((40,), -3e4), torch.randn(9000) + 7.0]),
}


def _header_values() -> dict[str, int]:
    """``TRACER_STAT_<NAME> = <value>`` of the C header's enum."""
    text = HEADER.read_text()
    return {name: int(value) for name, value in re.findall(r"TRACER_STAT_(\w+) = (\d+)", text)}


def _header_names() -> dict[str, str]:
    """``case TRACER_STAT_<NAME>: return "<name>";`` of the header's name function."""
    text = HEADER.read_text()
    return dict(re.findall(r'case TRACER_STAT_(\w+): return "(\w+)";', text))


def _same(got: dict[str, float], want: dict[str, float], rel: float = 1e-5) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=rel, abs=rel), key


def _same_vector(got: Sequence[float], want: Sequence[float], rel: float = 1e-5) -> None:
    assert len(got) == len(want) == SIZE
    for stat in Stat:
        if stat in (Stat.MIN, Stat.MAX) and not want[Stat.FINITE]:
            continue  # read only when some value is finite
        a, b = got[stat], want[stat]
        if math.isnan(b):
            assert math.isnan(a), stat.name
        else:
            assert a == pytest.approx(b, rel=rel, abs=rel), stat.name


def _collected(x: torch.Tensor, **options: bool) -> dict[str, float]:
    collector = StatsCollector(**options)
    index = collector.request(x)
    return collector.flush().get(index)


def test_stats_layout_header_values_equal_the_python_enum() -> None:
    values = _header_values()
    assert values.pop("SIZE") == SIZE == len(Stat)
    assert values == {stat.name: stat.value for stat in Stat}


def test_stats_layout_header_names_equal_the_python_layout() -> None:
    names = _header_names()
    assert tuple(names[stat.name] for stat in Stat) == LAYOUT
    assert len(names) == SIZE


@pytest.mark.parametrize("module", ["speedups", "probe"])
def test_stats_layout_compiled_modules_export_the_python_layout(
    module: str, need_extension: Callable[[str], None]
) -> None:
    need_extension(module)
    compiled = getattr(__import__(f"tracer.core._{module}").core, f"_{module}")
    assert compiled.LAYOUT == LAYOUT


def test_stats_layout_int_vector_is_named_too() -> None:
    assert [stat.value for stat in stats_layout.IntStat] == list(range(stats_layout.INT_SIZE))


@pytest.mark.parametrize("case", list(CASES))
def test_stats_layout_every_path_gives_the_same_statistics(
    case: str, need_extension: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    need_extension("speedups")
    need_extension("probe")
    torch.manual_seed(0)
    x = CASES[case]()
    want = reference_stats(x)
    assert x.numel() <= SMALL_NUMEL  # small enough for the row buffers
    got: dict[str, dict[str, float]] = {}
    vector = kernel_vector(x)
    assert vector is not None
    got["kernel vector"] = stats_from_kernel(vector)
    got["collector, kernel"] = _collected(x)  # the compiled probe's float_stats or the kernel
    got["device vectors (defer_cpu)"] = _collected(x, defer_cpu=True)
    kind, device = device_vector(x)
    assert kind == "float"
    got["device vector"] = stats_from_vector(kind, x.numel(), device.tolist())
    monkeypatch.setattr(tracer.core.stats, "_float_stats", None)  # as built without the kernel
    got["torch reductions"] = tensor_stats(x)
    collector = StatsCollector()
    assert not collector.uses_kernel
    index = collector.request(x)
    assert collector._buffers, "the tensor did not go to a row buffer"
    got["row buffer"] = collector.flush().get(index)
    for path, stats in got.items():
        try:
            _same(stats, want, rel=1e-5 if x.numel() < 4000 else 1e-4)
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from None


@pytest.mark.parametrize("case", ["float32", "float64 matrix", "nan and inf", "all nan", "zeros"])
def test_stats_layout_every_vector_has_the_same_numbers_in_the_same_places(
    case: str, need_extension: Callable[[str], None]
) -> None:
    need_extension("speedups")
    need_extension("probe")
    from tracer.core._probe import float_stats as probe_float_stats
    from tracer.core._speedups import float_stats

    torch.manual_seed(0)
    x = CASES[case]()
    kernel = float_stats(x.data_ptr(), x.numel(), x.element_size())
    _same_vector(probe_float_stats(x), kernel)
    _same_vector(torch_vector(x), kernel)
    _same_vector(device_vector(x)[1].tolist(), kernel)
    fast = chunked_vector(x)
    if fast is not None:  # None: the careful path decides (a NaN, an Inf)
        _same_vector(fast, kernel)


def test_stats_layout_merged_parts_agree_in_cpp_and_python(
    need_extension: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    need_extension("probe")
    from tracer.core._probe import float_stats as probe_float_stats

    torch.manual_seed(0)
    x = torch.randn(BIG_NUMEL * 3) * 2 + 5
    x[::1000] = float("nan")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threaded = probe_float_stats(x)  # parts merged by _probe.cpp
    finally:
        torch.set_num_threads(before)
    want = reference_stats(x)
    _same(stats_from_kernel(threaded), want)
    _same(_collected(x, defer_cpu=True), want)  # device chunks merged by merge_vectors
    monkeypatch.setattr(tracer.core.stats, "_float_stats", None)
    strided = torch.randn(BIG_NUMEL * 2, 2)[:, 0] * 3  # chunked, merged by merge_vectors
    _same(tensor_stats(strided), reference_stats(strided))
