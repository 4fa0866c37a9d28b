"""Statistics of big tensors never copy them: half precision, expanded (stride-0), strided and
integer tensors are reduced a chunk at a time, with the float64 reference's values."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from core.reference import reference_stats

import tracer
import tracer.core.stats
from tracer.core.collector import StatsCollector
from tracer.core.stats import BIG_NUMEL

ROOT = Path(__file__).parents[2]


def spiky(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` values around 1 with a NaN, an Inf and a zero in them."""
    torch.manual_seed(n)
    x = torch.randn(n, dtype=torch.float64) * 3 + 1
    x[5], x[7], x[9] = float("nan"), float("inf"), 0.0
    return x.to(dtype)


def big_floats() -> dict[str, torch.Tensor]:
    """Float tensors above BIG_NUMEL that cannot be read where they lie."""
    torch.manual_seed(0)
    return {
        "float16": torch.randn(BIG_NUMEL + 4096).half(),
        "bfloat16": torch.randn(BIG_NUMEL + 4096).bfloat16(),
        "expanded": spiky(3000).expand(400, 3000),
        "expanded_inner": spiky(3000).reshape(3000, 1).expand(3000, 400),
        "expanded_half": spiky(3000, torch.float16).expand(400, 3000),
        "strided": torch.randn(3000, 1000)[:, ::2],
        "nan_float32": spiky(BIG_NUMEL + 10),
        "negated": torch._neg_view(torch.randn(BIG_NUMEL + 10)),
        "transposed_float64": torch.randn(1100, 1000, dtype=torch.float64).t(),
    }


def big_others() -> dict[str, torch.Tensor]:
    """Integer and bool tensors above BIG_NUMEL (a sum of int32 widens to an int64 copy)."""
    torch.manual_seed(0)
    return {
        "int64": torch.randint(-3, 50, (BIG_NUMEL + 7,)),
        "int_expanded": torch.randint(-3, 5, (3000,)).expand(400, 3000),
        "int8_strided": torch.randint(-100, 100, (2 * BIG_NUMEL + 2,), dtype=torch.int8)[::2],
        "bool_expanded": (torch.rand(3000) > 0.3).expand(400, 3000),
    }


def int_reference(x: torch.Tensor) -> dict[str, float]:
    n, d = x.numel(), x.double()
    if x.dtype == torch.bool:
        return {"numel": n, "true_frac": d.mean().item()}
    return {
        "numel": n,
        "mean": d.mean().item(),
        "min": d.min().item(),
        "max": d.max().item(),
        "zero_frac": (d == 0).double().mean().item(),
    }


def collected(x: torch.Tensor, *, defer_cpu: bool = False) -> tuple[dict[str, float], list[str]]:
    collector = StatsCollector(defer_cpu=defer_cpu)
    index = collector.request(x)
    return collector.flush().get(index), collector.take_notes()


def assert_matches(got: dict[str, float], want: dict[str, float], scale: float) -> None:
    """Equal keys; values within 1e-5 relative, or 1e-5 of the data's scale (a mean near 0)."""
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5 * scale), key


@pytest.mark.parametrize("kind", sorted(big_floats()))
def test_stats_big_float_tensor_matches_float64_reference(kind: str, stats_path: str) -> None:
    x = big_floats()[kind]
    assert x.numel() > BIG_NUMEL
    want = reference_stats(x)
    got, _ = collected(x)
    assert_matches(got, want, want.get("abs_mean", 1.0))
    assert_matches(tracer.core.stats.tensor_stats(x), want, want.get("abs_mean", 1.0))


@pytest.mark.parametrize("kind", sorted(big_floats()))
def test_stats_big_float_tensor_on_the_accelerator_path_matches(kind: str) -> None:
    x = big_floats()[kind]
    want = reference_stats(x)
    got, _ = collected(x, defer_cpu=True)  # the device path, run on the CPU
    assert_matches(got, want, want.get("abs_mean", 1.0))


@pytest.mark.parametrize("kind", sorted(big_others()))
@pytest.mark.parametrize("defer_cpu", [False, True])
def test_stats_big_integer_and_bool_tensors_match(kind: str, defer_cpu: bool) -> None:
    x = big_others()[kind]
    got, _ = collected(x, defer_cpu=defer_cpu)
    assert_matches(got, int_reference(x), 1.0)


def test_stats_big_zero_tensor_without_memory_is_all_zeros() -> None:
    x = torch._efficientzerotensor(BIG_NUMEL * 4)
    got, _ = collected(x)
    assert got["numel"] == BIG_NUMEL * 4 and got["max"] == 0.0 and got["zero_frac"] == 1.0


def test_stats_big_chunked_path_is_noted_once_in_the_run() -> None:
    class Expand(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.half().expand(500, -1)

    model = Expand()
    with tracer.trace(model) as t:
        for _ in range(2):
            model(torch.randn(4000))
            t.step()
    records = [r for c in t.calls for r in c.outputs]
    assert len(records) == 2 and all(r.stats["numel"] == 2_000_000 for r in records)
    assert sum("are reduced 262,144 elements at a time" in note for note in t.notes) == 1
    assert t.sink.notes == t.notes  # type: ignore[attr-defined]


PEAK_SCRIPT = """
import json, sys

import torch
import tracer
import tracer.core.stats

if sys.argv[1] == "torch":
    tracer.core.stats._float_stats = None  # as an install built without the C kernel
torch.set_num_threads(1)  # the peak is what is measured; one thread keeps it quick


def hwm_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def reset_hwm():
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak resident size starts again from the current one


class Out(torch.nn.Module):
    def forward(self, x):
        return self.make(x)


results = {}
makers = {
    # 50M float16 values (100 MB): a float32 copy would be 200 MB
    "float16": lambda: torch.empty(50_000_000, dtype=torch.float16).uniform_(-2, 2),
    # 40 KB of real data repeated to 200M values: 800 MB as a float32 copy
    "expanded": lambda: torch.empty(10_000).uniform_(-2, 2).expand(20_000, 10_000),
    # 50M int32 values (200 MB): their sum would widen to a 400 MB int64 copy
    "int32": lambda: torch.empty(50_000_000, dtype=torch.int32).random_(-5, 100),
    # every other column of 50M float32 values: a contiguous copy would be 100 MB
    "strided": lambda: torch.empty(10_000, 5_000).uniform_(-2, 2)[:, ::2],
}
for kind, make in makers.items():
    model = Out()
    small = make().reshape(-1)[:2_000_000] if kind != "strided" else make()[:500]
    model.make = lambda x, small=small: small
    with tracer.trace(model):  # warm up every code path on a smaller tensor of the same kind
        model(0)
    big = make()
    model.make = lambda x: big
    reset_hwm()
    before = hwm_mb()
    with tracer.trace(model) as t:
        model(0)
    stats = dict(t.calls[0].outputs[0].stats)
    results[kind] = {"extra_mb": hwm_mb() - before, "stats": stats}
    del big, t
print(json.dumps(results))
"""


@pytest.mark.parametrize("path", ["kernel", "torch"])
def test_stats_big_tensor_peak_memory_stays_far_below_a_copy(path: str) -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident size")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PEAK_SCRIPT), path],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    copies_mb = {"float16": 200, "expanded": 800, "int32": 400, "strided": 100}
    for kind, copy_mb in copies_mb.items():
        extra = results[kind]["extra_mb"]
        assert extra < copy_mb / 8, f"{kind}: {extra:.1f} MB extra (a copy is {copy_mb} MB)"
    f16, expanded = results["float16"]["stats"], results["expanded"]["stats"]
    assert f16["numel"] == 50_000_000 and -2 <= f16["min"] < -1.99 and 1.99 < f16["max"] <= 2
    assert f16["mean"] == pytest.approx(0, abs=1e-3) and f16["std"] == pytest.approx(1.1547, 1e-3)
    assert expanded["numel"] == 200_000_000 and expanded["nan_count"] == 0
    assert results["int32"]["stats"]["max"] == 99 and results["int32"]["stats"]["min"] == -5
