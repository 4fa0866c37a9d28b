"""The accelerator statistics path: one vector per tensor, read back once per step."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from core.models import ArticleLSTM

import tracer
from tracer.core.collector import StatsCollector
from tracer.core.stats import device_vector, stats_from_vector, tensor_stats

CASES = {
    "float": torch.randn(4000) * 3 + 1,
    "float with nan and inf": torch.tensor(
        [1.0, float("nan"), 2.0, float("inf"), -float("inf"), 0.0]
    ),
    "all nan": torch.full((5,), float("nan")),
    "float16": (torch.randn(3000) * 50).half(),
    "bfloat16": torch.randn(3000).bfloat16(),
    "mean far from zero": torch.randn(10000) * 1e-3 + 1000.0,
    "int64 tokens": torch.randint(0, 500, (50, 200)),
    "bool": torch.rand(1000) > 0.3,
    "0-d": torch.tensor(2.5),
    # one large value before a million small ones: the small ones' share of the L1 norm was
    # lost summing in float32 (abs_mean 0.4% off); the big path's chunks too
    "an outlier first": torch.cat([torch.tensor([1e5]), torch.randn(1_000_000) * 1e-3]),
    "an outlier first, in chunks": torch.cat([torch.tensor([1e5]), torch.randn(5_000_000) * 1e-3]),
}


def _same(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("name", list(CASES))
def test_device_vector_matches_the_reference_statistics(name: str) -> None:
    x = CASES[name]
    kind, vector = device_vector(x)
    _same(stats_from_vector(kind, x.numel(), vector.tolist()), tensor_stats(x))


def test_deferred_collector_fills_every_ref_at_flush_and_reuses_seen_tensors() -> None:
    collector = StatsCollector(defer_cpu=True)
    tensors = [CASES[name] for name in ("float", "int64 tokens", "bool", "float16")]
    refs = [collector.request(x) for x in tensors]
    assert collector.request(tensors[0]) == refs[0]  # the same tensor is reduced once
    assert len(collector._pending) == len(tensors)  # nothing read back before the flush
    stats = collector.flush()
    for x, ref in zip(tensors, refs, strict=True):
        _same(stats.get(ref), tensor_stats(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_traced_step_synchronises_at_most_once() -> None:
    model = ArticleLSTM(vocab=100, embed=8, hidden=32).cuda()
    x = torch.randint(1, 100, (6, 20), device="cuda")
    with tracer.trace(model, ops=True, grads=True) as t:
        model(x)[0].sum().backward()
        t.step()
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                model(x)[0].sum().backward()
                t.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    assert sum("synchroniz" in str(w.message) for w in caught) <= 1
    lstm = next(c for c in t.flow(1) if c.module == "lstm")
    assert lstm.outputs[0].stats["numel"] == 6 * 20 * 32 and "std" in lstm.outputs[0].stats
