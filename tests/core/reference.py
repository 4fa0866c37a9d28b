"""The built-in statistics of a float tensor computed the slow, obvious way, in float64."""

from __future__ import annotations

import torch


def reference_stats(x: torch.Tensor) -> dict[str, float]:
    """Counts of NaN/Inf, everything else over the finite values (counts only if none); the
    near-value bands compared in float64 against the decimal bounds, as real numbers."""
    d = x.double().reshape(-1)
    finite = d[torch.isfinite(d)]
    want: dict[str, float] = {
        "numel": d.numel(),
        "nan_count": int(torch.isnan(d).sum()),
        "inf_count": int(torch.isinf(d).sum()),
    }
    if finite.numel():
        want.update(
            mean=finite.mean().item(),
            std=finite.std().item() if finite.numel() > 1 else 0.0,
            min=finite.min().item(),
            max=finite.max().item(),
            abs_mean=finite.abs().mean().item(),
            l2=finite.norm().item(),
            zero_frac=(finite == 0).double().mean().item(),
            near_zero_frac=(finite.abs() <= 0.01).double().mean().item(),
            near_one_frac=((finite.abs() >= 0.99) & (finite.abs() <= 1.01)).double().mean().item(),
        )
    return want
