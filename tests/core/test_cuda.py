"""On a CUDA device: records name the device, statistics match the CPU, outputs are unchanged."""

from __future__ import annotations

import pytest
import torch
from core.models import ArticleLSTM

import tracer
from tracer.core.stats import tensor_stats

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_trace_records_device_and_matching_statistics() -> None:
    torch.manual_seed(0)
    model = ArticleLSTM(vocab=100, embed=8, hidden=32).cuda()
    x = torch.randint(0, 100, (6, 20), device="cuda")
    plain, _ = model(x)
    with tracer.trace(model, ops=True, grads=True) as t:
        out, _ = model(x)
        out.sum().backward()
        t.step()
    assert torch.equal(plain, out)
    lstm = next(c for c in t.calls if c.module == "lstm")
    assert {r.device for r in lstm.outputs} == {"cuda:0"}
    with torch.no_grad():
        want = tensor_stats(model.lstm(model.embedding(x))[0].cpu())
    got = lstm.outputs[0].stats
    for key in ("mean", "std", "min", "max", "abs_mean", "l2", "zero_frac"):
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert any(r.role == "grad" for r in lstm.grads)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_statistics_upcast(dtype: torch.dtype) -> None:
    x = (torch.randn(100_000, device="cuda") * 100).to(dtype)
    got = tensor_stats(x)
    want = tensor_stats(x.float().cpu())
    assert got["l2"] == pytest.approx(want["l2"], rel=1e-4)
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-3, abs=1e-3)
