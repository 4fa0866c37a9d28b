"""Value statistics of tensors, right for every dtype and cheap enough for every layer call.

Float tensors get ``BUILTIN_STATS``, integer tensors ``numel/mean/min/max/zero_frac``, bool
tensors ``numel/true_frac``; sparse, meta, quantized, nested and complex tensors ``numel`` only.
float16/bfloat16 are reduced in float32. NaN and Inf are counted and the other statistics are
taken over the finite values.

Cost model (see PERF-NOTES): every torch reduction costs a few microseconds of dispatch and
one pass over memory per statistic. A CPU float tensor therefore goes to the compiled kernel
(``tracer/_speedups.c``) when it was built: one pass, all statistics, about 0.6 us for a
2,048-element tensor, called straight from the hook. Without it, the torch path below is used:
a small tensor's values are copied into a per-step row buffer and all rows of one size are
reduced together (see :mod:`tracer.collector`); a big tensor is reduced chunk by chunk, and
its standard deviation is derived from the L2 norm and the sum unless cancellation would make
that inexact. Accelerator tensors always use torch (:func:`device_vector`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from tracer.records import BUILTIN_STATS

StatFn = Callable[[torch.Tensor], float | int | None]

#: Tensors with at most this many elements are copied and reduced in a batch at step end.
SMALL_NUMEL = 16384
#: Elements per row-buffer chunk (2 MB of float32, reduced when full while still in cache).
CHUNK_NUMEL = 1 << 19

#: Elements per chunk of a big CPU tensor: 1 MB of float32 stays in a core's L2 cache.
CHUNK = 1 << 18

#: Why the compiled kernel is missing ("" when it loaded), for the run's notes.
KERNEL_MISSING = ""
try:
    from tracer._speedups import float_stats as _float_stats
except ImportError as exc:  # built without a C compiler: the torch reductions do the same work
    _float_stats = None
    KERNEL_MISSING = f"{type(exc).__name__}: {exc}"

#: Dtypes the compiled kernel reduces (float16/bfloat16 after a conversion to float32).
KERNEL_DTYPES = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16})

_DEFAULT_EXTRA: dict[str, StatFn] = {}
_LOCAL = threading.local()


def register_stat(name: str, fn: StatFn, *, replace: bool = False) -> None:
    """Add an extra statistic ``fn(tensor) -> float`` computed for every float tensor."""
    validate_stat(name, fn)
    if name in _DEFAULT_EXTRA and not replace:
        raise ValueError(f"statistic {name!r} is already registered (pass replace=True)")
    _DEFAULT_EXTRA[name] = fn


def unregister_stat(name: str) -> None:
    """Remove an extra statistic added with :func:`register_stat` (missing names are ignored)."""
    _DEFAULT_EXTRA.pop(name, None)


def default_extra_stats() -> dict[str, StatFn]:
    """A copy of the process-wide extra statistics (a trace takes a snapshot when it opens)."""
    return dict(_DEFAULT_EXTRA)


def validate_stat(name: str, fn: Any) -> None:
    """Raise a clear error for a bad statistic name or a non-callable."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"statistic name must be an identifier, got {name!r}")
    if name in BUILTIN_STATS or name == "true_frac":
        raise ValueError(f"statistic {name!r} is built in and cannot be replaced")
    if not callable(fn):
        raise TypeError(f"statistic {name!r} must be callable, got {type(fn).__name__}")


def kernel_available() -> bool:
    """Whether the compiled one-pass kernel was built (else statistics use torch reductions)."""
    return _float_stats is not None


def compiled_kernel() -> Callable[[int, int, int], tuple[float, ...]] | None:
    """``float_stats(address, numel, itemsize)`` of ``tracer._speedups``, or None when it was not
    built. Its caller must pass a contiguous float32 (4) or float64 (8) CPU tensor's
    ``data_ptr()`` and keep that tensor alive during the call; :func:`kernel_vector` does."""
    return _float_stats


def kernel_vector(x: torch.Tensor) -> tuple[float, ...] | None:
    """The compiled kernel's one-pass statistics of a non-empty, strided CPU tensor of a
    ``KERNEL_DTYPES`` dtype, in the :func:`stats_from_vector` layout after the element count:
    ``(numel, finite, nan, sum, spread, l2, l1, nonzero, min, max)``. None when the kernel is
    not built or cannot read the tensor's memory (a tensor subclass without storage).
    """
    kernel = compiled_kernel()
    if kernel is None:
        return None
    if x.dtype is not torch.float32 and x.dtype is not torch.float64:
        x = x.detach().float()
    if not x.is_contiguous():
        x = dense_order(x.detach())
        if not x.is_contiguous():
            x = x.contiguous()
    try:
        # The kernel reads the memory behind data_ptr(); ``x`` keeps it alive for the call.
        return kernel(x.data_ptr(), x.numel(), x.element_size())  # type: ignore[no-any-return]
    except (RuntimeError, NotImplementedError):
        return None


def stats_from_kernel(values: Sequence[float], at: int = 0) -> dict[str, float]:
    """Read a vector from :func:`kernel_vector` (its element count first), starting at index
    ``at`` of ``values`` (the collector keeps a step's vectors in one flat list)."""
    v = values
    return _float_dict(
        int(v[at]), v[at + 1], v[at + 2], v[at + 3], v[at + 4], v[at + 5], v[at + 6],
        v[at + 7], v[at + 8], v[at + 9],
    )  # fmt: skip


def has_values(t: torch.Tensor) -> bool:
    """True when the tensor's values can be read (not sparse, meta, quantized or nested)."""
    return (
        t.layout == torch.strided
        and not t.is_meta
        and not t.is_quantized
        and not t.is_nested
        and not t.is_complex()
    )


def tensor_stats(t: torch.Tensor) -> dict[str, float]:
    """All built-in statistics of one tensor, computed now (the reference path)."""
    n = t.numel()
    if n == 0 or not has_values(t):
        return {"numel": n}
    try:
        return _stats_by_kind(t.detach(), n)
    except (RuntimeError, TypeError, NotImplementedError):  # an exotic dtype without kernels
        return {"numel": n}


def _stats_by_kind(x: torch.Tensor, n: int) -> dict[str, float]:
    if x.dtype == torch.bool:
        return {"numel": n, "true_frac": int(torch.count_nonzero(x)) / n}
    if not x.is_floating_point():
        lo, hi = torch.aminmax(x)
        nonzero = int(torch.count_nonzero(x))
        total = float(x.sum(dtype=torch.float64))
        return {
            "numel": n,
            "mean": total / n,
            "min": float(lo),
            "max": float(hi),
            "zero_frac": (n - nonzero) / n,
        }
    if x.device.type == "cpu" and x.dtype in KERNEL_DTYPES:
        vector = kernel_vector(x)
        if vector is not None:
            return stats_from_kernel(vector)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # float16 / bfloat16 / float8: reduce in float32
    x = dense_order(x)
    sums = chunked_sums(x) if x.device.type == "cpu" and x.is_contiguous() else fused_sums(x)
    stats = stats_from_sums(n, sums)
    return stats if stats is not None else finite_stats(x, n)


def dense_order(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its dimensions permuted into memory order when that makes it contiguous.

    The statistics do not depend on element order, and reductions over contiguous memory are
    much faster (a batch-first LSTM's output is a transposed view).
    """
    if x.is_contiguous() or x.dim() < 2:
        return x
    order = sorted(range(x.dim()), key=lambda d: (x.stride(d), x.shape[d]), reverse=True)
    permuted = x.permute(order)
    return permuted if permuted.is_contiguous() else x


def fused_sums(x: torch.Tensor) -> list[float]:
    """``[sum, l2, l1, min, max, nonzero]`` of a float32/float64 tensor in one transfer."""
    lo, hi = torch.aminmax(x)
    parts = (
        x.sum(),
        torch.linalg.vector_norm(x, 2),
        torch.linalg.vector_norm(x, 1),
        lo,
        hi,
        torch.count_nonzero(x).to(x.dtype),
    )
    if x.device.type == "cpu":  # .item() is ~0.1 us on the CPU and never synchronises
        return [p.item() for p in parts]
    return torch.stack(parts).tolist()


def chunked_sums(x: torch.Tensor) -> list[float]:
    """``[sum, l2, l1, min, max, nonzero]`` of a contiguous CPU tensor, chunk by chunk.

    Each chunk is reduced while it sits in cache, and ``|x|`` and the nonzero flags are built
    in a reused scratch buffer with vectorised in-place ops: the L1 and L0 reduction kernels
    are not vectorised and cost as much as all the others together. Partial results are
    combined in float64. NaN or Inf poison the sum or the squares, which sends the tensor to
    :func:`finite_stats` (so the min/max combination never has to order NaN).
    """
    scratch = _scratch(x.dtype)
    total = squares = l1 = nonzero = 0.0
    lo, hi = math.inf, -math.inf
    for chunk in x.reshape(-1).split(CHUNK):
        part = scratch[: chunk.numel()]
        low, high = torch.aminmax(chunk)
        total += chunk.sum().item()
        squares += torch.linalg.vector_norm(chunk).item() ** 2
        lo, hi = min(lo, low.item()), max(hi, high.item())
        torch.abs(chunk, out=part)
        l1 += part.sum().item()
        nonzero += part.sign_().sum().item()
    return [total, math.sqrt(squares), l1, lo, hi, nonzero]


def _scratch(dtype: torch.dtype) -> torch.Tensor:
    """A per-thread, per-dtype scratch buffer of ``CHUNK`` elements (kept: no page faults)."""
    buffers: dict[torch.dtype, torch.Tensor] = _LOCAL.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is None:
        buffer = buffers[dtype] = torch.empty(CHUNK, dtype=dtype)
    return buffer


def stats_from_sums(n: int, sums: list[float]) -> dict[str, float] | None:
    """Statistics from fused sums; None when a value is non-finite or the std would be inexact."""
    total, l2, l1, lo, hi, nonzero = sums
    if needs_careful(n, total, l2, lo, hi):
        return None
    return fast_stats(n, total, l2, l1, lo, hi, nonzero)


def fast_stats(
    n: int, total: float, l2: float, l1: float, lo: float, hi: float, nonzero: float
) -> dict[str, float]:
    """Statistics from fused sums already known to be finite and precise enough."""
    mean = total / n
    spread = l2 * l2 - n * mean * mean
    std = math.sqrt(max(spread, 0.0) / (n - 1)) if n > 1 else 0.0
    return {
        "numel": n,
        "mean": mean,
        "std": std,
        "min": lo,
        "max": hi,
        "abs_mean": l1 / n,
        "l2": l2,
        "zero_frac": (n - nonzero) / n,
        "nan_count": 0,
        "inf_count": 0,
    }


def needs_careful(n: int, total: float, l2: float, lo: float, hi: float) -> bool:
    """Whether the fast sums cannot give exact statistics (see :func:`finite_stats`)."""
    if not (math.isfinite(total) and math.isfinite(l2) and math.isfinite(lo) and math.isfinite(hi)):
        return True  # NaN/Inf present (or the squares overflowed)
    squares = l2 * l2
    mean = total / n
    # |mean| >> std: the difference of squares would lose the spread to rounding.
    return n > 1 and squares - n * mean * mean < 1e-2 * squares


def finite_stats(x: torch.Tensor, n: int) -> dict[str, float]:
    """The careful path: count NaN/Inf, then reduce the finite values in float64."""
    x = x.reshape(-1)
    nan_count = int(torch.isnan(x).sum())
    finite = x[torch.isfinite(x)].double()
    m = finite.numel()
    stats: dict[str, float] = {"numel": n, "nan_count": nan_count, "inf_count": n - m - nan_count}
    if m == 0:
        return stats
    lo, hi = torch.aminmax(finite)
    stats.update(
        mean=finite.mean().item(),
        std=finite.std().item() if m > 1 else 0.0,
        min=lo.item(),
        max=hi.item(),
        abs_mean=finite.abs().mean().item(),
        l2=torch.linalg.vector_norm(finite).item(),
        zero_frac=(m - int(torch.count_nonzero(finite))) / m,
    )
    return stats


def device_vector(x: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Statistics of an accelerator tensor as a float64 vector that stays on the device.

    No value is read back here (no host synchronisation): the collector concatenates the
    vectors of a whole step and transfers them once. Float tensors get the careful statistics
    unconditionally (finite mask, two-pass std), since the values are gone by the time a fast
    pass could tell that they were needed. Returns the kind (``float``, ``int``, ``bool``) that
    :func:`stats_from_vector` needs to read the vector back.
    """
    if x.dtype == torch.bool:
        return "bool", torch.count_nonzero(x).double().reshape(1)
    if not x.is_floating_point():
        lo, hi = torch.aminmax(x)
        ints = (x.sum(dtype=torch.float64), lo, hi, torch.count_nonzero(x))
        return "int", torch.stack([p.double() for p in ints])
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    finite = torch.isfinite(x)
    m = finite.sum()
    xz = torch.where(finite, x, 0.0)
    total = xz.sum(dtype=torch.float64)
    mean = total / m.clamp(min=1)
    spread = torch.linalg.vector_norm(torch.where(finite, x - mean.to(x.dtype), 0.0))
    parts = (
        m,
        torch.isnan(x).sum(),
        total,
        spread,
        torch.linalg.vector_norm(xz),
        torch.linalg.vector_norm(xz, 1),
        torch.count_nonzero(xz),
        torch.where(finite, x, math.inf).amin(),
        torch.where(finite, x, -math.inf).amax(),
    )
    return "float", torch.stack([p.double() for p in parts])


#: Length of each kind's vector from :func:`device_vector`.
VECTOR_SIZE = {"bool": 1, "int": 4, "float": 9}


def stats_from_vector(kind: str, n: int, v: list[float]) -> dict[str, float]:
    """Read back a vector made by :func:`device_vector` for a tensor of ``n`` elements."""
    if kind == "bool":
        return {"numel": n, "true_frac": v[0] / n}
    if kind == "int":
        total, lo, hi, nonzero = v
        return {"numel": n, "mean": total / n, "min": lo, "max": hi, "zero_frac": (n - nonzero) / n}
    return _float_dict(n, *v)


def _float_dict(
    n: int,
    finite: float,
    nan_count: float,
    total: float,
    spread: float,
    l2: float,
    l1: float,
    nonzero: float,
    lo: float,
    hi: float,
) -> dict[str, float]:
    """The float statistics from the sums over the ``finite`` finite values of ``n``."""
    m, nans = int(finite), int(nan_count)
    if m == 0:
        return {"numel": n, "nan_count": nans, "inf_count": n - nans}
    return {
        "numel": n,
        "nan_count": nans,
        "inf_count": n - m - nans,
        "mean": total / m,
        "std": spread / math.sqrt(m - 1) if m > 1 else 0.0,
        "min": lo,
        "max": hi,
        "abs_mean": l1 / m,
        "l2": l2,
        "zero_frac": (m - nonzero) / m,
    }


def extra_stats(t: torch.Tensor, extra: Mapping[str, StatFn]) -> dict[str, float]:
    """Run the extra statistics on a float tensor; a failing statistic is left out, not raised."""
    if not extra or not t.is_floating_point() or t.numel() == 0 or not has_values(t):
        return {}
    values: dict[str, float] = {}
    x = t.detach()
    for name, fn in extra.items():
        try:
            value = fn(x)
        except Exception:  # a plugin's statistic must never break the user's forward
            continue
        if value is not None:
            values[name] = float(value)
    return values
