"""Value statistics of tensors, right for every dtype and cheap enough for every layer call.

Float tensors get ``BUILTIN_STATS``, integer tensors ``numel/mean/min/max/zero_frac``, bool
tensors ``numel/true_frac``; sparse, meta, quantized, nested and complex tensors ``numel`` only.
float16/bfloat16 are reduced in float32. NaN and Inf are counted and the other statistics are
taken over the finite values: ``zero_frac``, ``near_zero_frac`` and ``near_one_frac`` are
fractions of the finite values (the bands: :data:`tracer.core.stats_layout.NEAR_BAND`).

Cost model (measured in benchmarks/README.md): every torch reduction costs a few microseconds of
dispatch and one pass over memory per statistic. A CPU float tensor therefore goes to the compiled
kernel (``tracer/core/_speedups.c``) when it was built: one pass, all statistics, about 0.6 us for
a 2,048-element tensor, called straight from the hook. Without it, the torch path below is used: a
small tensor's values are copied into a per-step row buffer and all rows of one size are reduced
together (see :mod:`tracer.core.collector`); a big tensor is reduced chunk by chunk, and its
standard deviation is derived from the L2 norm and the sum unless cancellation would make that
inexact. Accelerator tensors always use torch (:func:`device_vector`). Every float path produces
one statistics vector, laid out as :class:`tracer.core.stats_layout.Stat`, read by
:func:`stats_from_kernel`.

A tensor is never copied whole: one of more than ``BIG_NUMEL`` elements that cannot be read
where it lies (float16/bfloat16, integers, strided views) is reduced ``BIG_CHUNK`` elements at a
time and the parts merged exactly; an expanded (stride-0) tensor is reduced from its base and
its counts and sums scaled by the repeat factor. A tensor whose statistics cannot be computed
gets ``numel`` only, and the run's notes say why, once per reason (``note``). Extra
statistics (:class:`ExtraStats`) run after the built-in ones: one that fails, returns anything
but one real number, changes its input or is slow costs only itself, and the notes say so.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch

from tracer.core.stats_layout import (
    BOOL_KIND,
    EMPTY_KIND,
    FINITE,
    INT_SIZE,
    L1,
    L2,
    MAX,
    MIN,
    NAN,
    NEAR_BAND,
    NEAR_ONE,
    NEAR_ONE_HIGH,
    NEAR_ONE_LOW,
    NEAR_ZERO,
    NONZERO,
    NUMEL,
    SIZE,
    SPREAD,
    SUM,
    IntStat,
    Packed,
)
from tracer.core.torch_compat import is_zerotensor, tensor_version
from tracer.records import BUILTIN_STATS

T = TypeVar("T")
StatFn = Callable[[torch.Tensor], float | int | None]
#: ``note(key, text)``: tell the run something; its notes keep the first text of each key.
Note = Callable[[str, str], None]

#: Tensors with at most this many elements are copied and reduced in a batch at step end.
SMALL_NUMEL = 16384
#: Elements per row-buffer chunk (2 MB of float32, reduced when full while still in cache).
CHUNK_NUMEL = 1 << 19

#: Elements per chunk of a big CPU tensor: 1 MB of float32 stays in a core's L2 cache.
CHUNK = 1 << 18

#: A CPU tensor of more elements than this that cannot be read where it lies (float16 and
#: bfloat16, integers, strided or expanded views) is reduced ``BIG_CHUNK`` elements at a time.
BIG_NUMEL = 1 << 20
#: Elements converted or copied at a time on that path (2 MB as float64: extra memory stays small).
BIG_CHUNK = 1 << 18

#: Why the compiled kernel is missing ("" when it loaded), for the run's notes.
KERNEL_MISSING = ""
try:
    from tracer.core._speedups import float_stats as _float_stats
except ImportError as exc:  # built without a C compiler: the torch reductions do the same work
    _float_stats = None
    KERNEL_MISSING = f"{type(exc).__name__}: {exc}"
try:  # its integer pass (absent from an older build of the module)
    from tracer.core._speedups import int_stats as _int_stats
except ImportError:
    _int_stats = None

#: Integer dtypes the compiled integer pass reads, by the name it takes.
_INT_KINDS = {
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
}

#: Unsigned integer dtypes that torch reduces only after a conversion (to float64).
WIDE_INTS = frozenset(
    getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name)
)

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
    """``float_stats(address, numel, itemsize)`` of ``tracer.core._speedups``, or None when it was
    not built. Its caller must pass a contiguous float32 (4) or float64 (8) CPU tensor's
    ``data_ptr()`` and keep that tensor alive during the call; :func:`kernel_vector` does."""
    return _float_stats


def kernel_vector(x: torch.Tensor) -> tuple[float, ...] | None:
    """The compiled kernel's one-pass statistics vector (:mod:`tracer.core.stats_layout`) of a
    non-empty, strided CPU tensor of a ``KERNEL_DTYPES`` dtype. None when the kernel is not
    built or cannot read the tensor's memory (a tensor subclass without storage).
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
    except (RuntimeError, NotImplementedError, ValueError):  # no memory behind the tensor
        return None


def stats_from_kernel(v: Sequence[float], at: int = 0) -> dict[str, float]:
    """The float statistics of a statistics vector (every path's, see
    :mod:`tracer.core.stats_layout`) starting at index ``at`` of ``v`` (the collector keeps a
    step's vectors in flat lists)."""
    n, m, nans = int(v[at + NUMEL]), int(v[at + FINITE]), int(v[at + NAN])
    if m == 0:
        return {"numel": n, "nan_count": nans, "inf_count": n - nans}
    return {
        "numel": n,
        "nan_count": nans,
        "inf_count": n - m - nans,
        "mean": v[at + SUM] / m,
        "std": v[at + SPREAD] / math.sqrt(m - 1) if m > 1 else 0.0,
        "min": v[at + MIN],
        "max": v[at + MAX],
        "abs_mean": v[at + L1] / m,
        "l2": v[at + L2],
        "zero_frac": (m - v[at + NONZERO]) / m,
        "near_zero_frac": v[at + NEAR_ZERO] / m,
        "near_one_frac": v[at + NEAR_ONE] / m,
    }


try:  # stats_from_kernel compiled (absent from an older build of the kernel module)
    from tracer.core._speedups import kernel_stats as _kernel_stats
except ImportError:
    _kernel_stats = None

#: :func:`stats_from_kernel`, compiled where the kernel module has it (the same dict from the
#: same arithmetic, 0.2 us instead of 0.7): what reading a step's records calls per tensor.
vector_stats: Callable[[Sequence[float], int], dict[str, float]] = (
    _kernel_stats if _kernel_stats is not None else stats_from_kernel
)


def make_vector(
    *,
    numel: T,
    finite: T,
    nans: T,
    total: T,
    spread: T,
    l2: T,
    l1: T,
    nonzero: T,
    lo: T,
    hi: T,
    near_zero: T,
    near_one: T,
) -> tuple[T, ...]:
    """A statistics vector from its values by name (the torch paths build theirs here; the
    accelerator path places 0-d tensors, stacked into one device vector)."""
    v: list[Any] = [None] * SIZE
    v[NUMEL], v[FINITE], v[NAN], v[SUM], v[SPREAD] = numel, finite, nans, total, spread
    v[L2], v[L1], v[NONZERO], v[MIN], v[MAX] = l2, l1, nonzero, lo, hi
    v[NEAR_ZERO], v[NEAR_ONE] = near_zero, near_one
    return tuple(v)


def near_counts(
    a: torch.Tensor, dim: int | None = None, flags: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """How many of the values whose magnitudes are ``a`` lie in the near-zero and the near-one
    band (:mod:`tracer.core.stats_layout`), as tensors on ``a``'s device (per row along
    ``dim``); NaN and ±Inf fall in neither. A float32 ``a`` is compared in float32, which is
    exact (the layout module says why).

    On the CPU the comparisons write 0/1 into ``flags`` (a buffer shaped as ``a``, else a new
    one) and sum it in ``a``'s dtype: torch's CPU kernels for boolean masks took three times
    as long. Every CPU caller passes at most 2**24 values per sum, which float32 counts
    exactly. Elsewhere the masks are counted with ``count_nonzero`` (exact at any size).
    """
    if a.device.type != "cpu":
        near_one = torch.count_nonzero((a >= NEAR_ONE_LOW) & (a <= NEAR_ONE_HIGH), dim)
        return torch.count_nonzero(a <= NEAR_BAND, dim), near_one
    if flags is None:
        flags = torch.empty_like(a)
    near_zero = torch.le(a, NEAR_BAND, out=flags).sum(dim)
    # [low, high] as "at most high" less "below low": no third pass for the "and"
    near_one = torch.le(a, NEAR_ONE_HIGH, out=flags).sum(dim)
    return near_zero, near_one.sub_(torch.lt(a, NEAR_ONE_LOW, out=flags).sum(dim))


def sums_vector(
    n: int,
    total: float,
    l2: float,
    l1: float,
    lo: float,
    hi: float,
    nonzero: float,
    near: tuple[float, float],
) -> tuple[float, ...] | None:
    """The statistics vector of ``n`` values from their fast sums and ``near`` counts (the
    torch reductions' results); None when a value is non-finite or the spread would be inexact
    (:func:`needs_careful`: the caller reduces such a tensor with :func:`torch_vector`)."""
    if needs_careful(n, total, l2, lo, hi):
        return None
    spread = math.sqrt(max(l2 * l2 - total * total / n, 0.0))
    return make_vector(
        numel=n, finite=n, nans=0, total=total, spread=spread, l2=l2, l1=l1, nonzero=nonzero,
        lo=lo, hi=hi, near_zero=near[0], near_one=near[1],
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


def _ignore(key: str, text: str) -> None:
    """A :data:`Note` that tells nobody."""


def skip_reason(t: torch.Tensor) -> str | None:
    """Why a non-empty tensor's values cannot be reduced (the notes' key), or None."""
    if type(t).__name__ == "FakeTensor":  # torch._subclasses: shapes without values
        return "fake"
    if t.layout != torch.strided:
        return f"layout {t.layout}"
    if t.is_meta:
        return "meta"
    if t.is_quantized:
        return "quantized"
    if t.is_nested:
        return "nested"
    if t.is_complex():
        return "complex"
    return None


def note_skipped(note: Note, reason: str, t: torch.Tensor) -> None:
    """Say once per reason that tensors like ``t`` get only their element count."""
    dtype = str(t.dtype).removeprefix("torch.")
    note(
        f"stats-skip:{reason}",
        f"{reason} tensors (e.g. a {dtype} {type(t).__name__}) get only numel: the tracer "
        "does not reduce their values",
    )


def note_failed(note: Note, t: Any, exc: BaseException) -> None:
    """Say once per kind of tensor and error that reducing such tensors failed."""
    try:
        kind = f"{str(t.dtype).removeprefix('torch.')} {type(t).__name__} on {t.device.type}"
    except Exception:  # a tensor whose metadata cannot be read either
        kind = type(t).__name__
    note(
        f"stats-error:{kind}:{type(exc).__name__}",
        f"statistics of a {kind} failed ({one_line(exc)}): such tensors get only numel",
    )


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, cut to ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tensor_stats(t: torch.Tensor, note: Note = _ignore) -> dict[str, float]:
    """All built-in statistics of one tensor, computed now (the reference path); ``note``
    hears why a tensor got only its element count."""
    n = t.numel()
    if n == 0:
        return {"numel": n}
    reason = skip_reason(t)
    if reason is not None:
        note_skipped(note, reason, t)
        return {"numel": n}
    try:
        return _stats_by_kind(t.detach(), n, note)
    except (RuntimeError, TypeError, NotImplementedError, ValueError) as exc:  # exotic dtype
        note_failed(note, t, exc)
        return {"numel": n}


def _stats_by_kind(x: torch.Tensor, n: int, note: Note = _ignore) -> dict[str, float]:
    if is_zerotensor(x):  # all zeros and no memory behind them
        return zero_stats(x, n)
    if n > BIG_NUMEL and x.device.type == "cpu":
        return big_stats(x, note)
    if x.dtype == torch.bool:
        return {"numel": n, "true_frac": int(torch.count_nonzero(x)) / n}
    if not x.is_floating_point():
        kind = _INT_KINDS.get(x.dtype)
        if kind is not None and _int_stats is not None and _readable_ints(x):
            # One compiled pass where the values lie: a token batch costs 0.1 us, not 5.
            return _int_dict(n, *_int_stats(x.data_ptr(), n, kind))
        if x.dtype in WIDE_INTS:
            x = x.double()  # torch has few kernels for these (no aminmax, no sum)
        lo, hi = torch.aminmax(x)
        nonzero = int(torch.count_nonzero(x))
        return _int_dict(n, float(x.sum(dtype=torch.float64)), lo, hi, nonzero)
    if x.device.type == "cpu" and x.dtype in KERNEL_DTYPES:
        vector = kernel_vector(x)
        if vector is not None:
            return stats_from_kernel(vector)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # float16 / bfloat16 / float8: reduce in float32
    x = dense_order(x)
    vector = chunked_vector(x) if x.device.type == "cpu" and x.is_contiguous() else fused_vector(x)
    return stats_from_kernel(vector) if vector is not None else finite_stats(x, n)


def _int_dict(n: int, total: float, lo: Any, hi: Any, nonzero: int) -> dict[str, float]:
    """An integer tensor's statistics from its sum (a float), extremes and nonzero count."""
    return {
        "numel": n,
        "mean": total / n,
        "min": float(lo),
        "max": float(hi),
        "zero_frac": (n - nonzero) / n,
    }


def small_stats(v: Sequence[float], at: int = 0) -> dict[str, float]:
    """The statistics dict of a packed small vector at ``at``: what :func:`tensor_stats` gives
    the same tensor (an empty one its element count, a bool one its share of True, an integer
    one :func:`_int_dict`)."""
    kind = v[at + Packed.KIND]
    if kind == EMPTY_KIND:
        return {"numel": 0}
    n, ints = int(v[at + Packed.NUMEL]), at + Packed.INTS
    nonzero = int(v[ints + IntStat.NONZERO])
    if kind == BOOL_KIND:
        return {"numel": n, "true_frac": nonzero / n}
    return _int_dict(
        n, v[ints + IntStat.SUM], v[ints + IntStat.MIN], v[ints + IntStat.MAX], nonzero
    )


def _readable_ints(x: torch.Tensor) -> bool:
    """Whether the integer pass may read ``x``'s memory: a plain (not a subclass: its memory may
    be no memory) contiguous CPU tensor that is not a negated view."""
    return (
        type(x) is torch.Tensor
        and x.device.type == "cpu"
        and x.layout is torch.strided
        and not x.is_nested
        and x.is_contiguous()
        and not x.is_neg()
    )


def zero_stats(x: torch.Tensor, n: int) -> dict[str, float]:
    """The statistics of ``n`` zeros of ``x``'s dtype (a memoryless zero tensor)."""
    if x.dtype == torch.bool:
        return {"numel": n, "true_frac": 0.0}
    if not x.is_floating_point():
        return {"numel": n, "mean": 0.0, "min": 0.0, "max": 0.0, "zero_frac": 1.0}
    return stats_from_kernel(
        make_vector(
            numel=n, finite=n, nans=0, total=0.0, spread=0.0, l2=0.0, l1=0.0, nonzero=0,
            lo=0.0, hi=0.0, near_zero=n, near_one=0,
        )
    )  # fmt: skip


# -- big tensors: exact statistics with bounded extra memory ---------------------------------


def expanded_base(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``x`` without the repeats of its stride-0 dimensions, and how often each element repeats.

    An ``expand``-ed tensor shows every element of its base the same number of times, so its
    mean, spread per element, extremes and fractions are the base's and its counts and sums
    scale by that factor: exact, without materialising the repeats.
    """
    factor = 1
    for dim in range(x.dim()):
        if x.stride(dim) == 0 and x.shape[dim] > 1:
            factor *= x.shape[dim]
            x = x.narrow(dim, 0, 1)
    return x, factor


def memory_order(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its dimensions sorted by stride, largest first (a view: the statistics do not
    depend on element order, and chunks along the leading dimensions are then compact)."""
    if x.dim() < 2:
        return x
    strides = x.stride()
    order = sorted(range(x.dim()), key=lambda d: (abs(strides[d]), x.shape[d]), reverse=True)
    return x.permute(order)


def chunks(x: torch.Tensor, limit: int = BIG_CHUNK) -> Iterator[torch.Tensor]:
    """Views that cover every element of ``x`` once, each of at most ``limit`` elements (or one
    row of the innermost dimension where that alone is longer than ``limit``)."""
    while x.dim() > 1 and x.shape[0] == 1:
        x = x[0]
    if x.numel() <= limit or x.dim() == 0:
        yield x
        return
    if x.is_contiguous():
        yield from x.reshape(-1).split(limit)
        return
    if x.dim() == 1:
        yield from x.split(limit)
        return
    rows = max(1, limit // (x.numel() // x.shape[0]))
    for part in x.split(rows):
        if part.numel() <= limit:
            yield part
        else:
            yield from chunks(part[0], limit)


def merge_vectors(parts: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """One statistics vector from those of disjoint parts (as ``merge`` in
    tracer/core/_probe.cpp): counts and sums add, extremes compare, spreads combine through
    each part's mean."""
    numel = finite = nans = total = squares = l1 = nonzero = near_zero = near_one = 0.0
    lo, hi = math.inf, -math.inf
    for p in parts:
        numel, finite, nans = numel + p[NUMEL], finite + p[FINITE], nans + p[NAN]
        total, squares = total + p[SUM], squares + p[L2] * p[L2]
        l1, nonzero = l1 + p[L1], nonzero + p[NONZERO]
        near_zero, near_one = near_zero + p[NEAR_ZERO], near_one + p[NEAR_ONE]
        if p[FINITE] > 0:
            lo, hi = min(lo, p[MIN]), max(hi, p[MAX])
    mean = total / finite if finite else 0.0
    m2 = sum(
        p[SPREAD] * p[SPREAD] + p[FINITE] * (p[SUM] / p[FINITE] - mean) ** 2
        for p in parts
        if p[FINITE] > 0
    )
    if not finite:
        lo = hi = math.nan
    return make_vector(
        numel=numel, finite=finite, nans=nans, total=total, spread=math.sqrt(m2),
        l2=math.sqrt(squares), l1=l1, nonzero=nonzero, lo=lo, hi=hi, near_zero=near_zero,
        near_one=near_one,
    )  # fmt: skip


def repeat_vector(v: Sequence[float], factor: int) -> tuple[float, ...]:
    """The statistics vector of a tensor that repeats every element of ``v``'s tensor
    ``factor`` times: counts and sums scale by it, norms and the spread by its square root."""
    root = math.sqrt(factor)
    return make_vector(
        numel=v[NUMEL] * factor, finite=v[FINITE] * factor, nans=v[NAN] * factor,
        total=v[SUM] * factor, spread=v[SPREAD] * root, l2=v[L2] * root, l1=v[L1] * factor,
        nonzero=v[NONZERO] * factor, lo=v[MIN], hi=v[MAX], near_zero=v[NEAR_ZERO] * factor,
        near_one=v[NEAR_ONE] * factor,
    )  # fmt: skip


def torch_vector(x: torch.Tensor) -> tuple[float, ...]:
    """The statistics vector of a float tensor from torch reductions in float64, NaN and Inf
    counted and left out (the careful path: :func:`finite_stats`, and the big path's chunks
    when the kernel was not built)."""
    n = x.numel()
    x = x.reshape(-1).double()
    finite = torch.isfinite(x)
    m = int(finite.sum())
    nans = int(torch.isnan(x).sum())
    if m == 0:
        return make_vector(
            numel=n, finite=0, nans=nans, total=0.0, spread=0.0, l2=0.0, l1=0.0, nonzero=0,
            lo=math.nan, hi=math.nan, near_zero=0, near_one=0,
        )  # fmt: skip
    values = x if m == n else x[finite]
    total = values.sum().item()
    lo, hi = torch.aminmax(values)
    magnitudes = values.abs()
    near_zero, near_one = near_counts(magnitudes)
    return make_vector(
        numel=n, finite=m, nans=nans, total=total,
        spread=torch.linalg.vector_norm(values - total / m).item(),
        l2=torch.linalg.vector_norm(values).item(), l1=magnitudes.sum().item(),
        nonzero=int(torch.count_nonzero(values)), lo=lo.item(), hi=hi.item(),
        near_zero=int(near_zero), near_one=int(near_one),
    )  # fmt: skip


def _float_part(chunk: torch.Tensor, kernel: Callable[..., tuple[float, ...]] | None) -> Any:
    """The kernel vector of one chunk, converted to float32/float64 (bounded) where needed."""
    if chunk.dtype is not torch.float32 and chunk.dtype is not torch.float64:
        chunk = chunk.to(torch.float32 if chunk.element_size() < 4 else torch.float64)
    if chunk.is_neg():
        chunk = chunk.resolve_neg()
    if not chunk.is_contiguous():
        chunk = chunk.contiguous()
    if kernel is not None:
        return kernel(chunk.data_ptr(), chunk.numel(), chunk.element_size())
    vector = chunked_vector(chunk)
    return vector if vector is not None else torch_vector(chunk)


def big_vector(x: torch.Tensor) -> tuple[float, ...]:
    """The kernel vector of a big CPU float tensor, from chunks of at most ``BIG_CHUNK``
    elements (an expanded tensor from its base)."""
    base, factor = expanded_base(x)
    kernel = compiled_kernel()
    if base.dtype in (torch.float32, torch.float64) and kernel is not None and not base.is_neg():
        dense = dense_order(base)
        if dense.is_contiguous():  # readable where it lies: one pass, no copy
            vector = kernel(dense.data_ptr(), dense.numel(), dense.element_size())
            return repeat_vector(vector, factor)
    parts = [_float_part(c, kernel) for c in chunks(memory_order(base))]
    return repeat_vector(merge_vectors(parts), factor)


def big_stats(x: torch.Tensor, note: Note = _ignore) -> dict[str, float]:
    """Statistics of a big CPU tensor without copying it (see :data:`BIG_NUMEL`)."""
    n = x.numel()
    if x.dtype in (torch.float32, torch.float64) and dense_order(x).is_contiguous():
        return stats_from_kernel(big_vector(x))  # read where it lies, a chunk at a time
    note(
        "stats-big",
        f"tensors of more than {BIG_NUMEL:,} elements that cannot be read where they lie "
        f"(float16/bfloat16, integer or bool, strided or expanded views) are reduced "
        f"{BIG_CHUNK:,} elements at a time: exact statistics, bounded extra memory",
    )
    if x.is_floating_point():
        return stats_from_kernel(big_vector(x))
    base, factor = expanded_base(x)
    if x.dtype == torch.bool:
        true = sum(int(torch.count_nonzero(c)) for c in chunks(memory_order(base)))
        return {"numel": n, "true_frac": true * factor / n}
    total, nonzero, lo, hi = 0.0, 0, math.inf, -math.inf
    for c in chunks(memory_order(base)):
        if c.dtype in WIDE_INTS:
            c = c.double()
        low, high = torch.aminmax(c)
        lo, hi = min(lo, float(low)), max(hi, float(high))
        total += float(c.sum(dtype=torch.float64))
        nonzero += int(torch.count_nonzero(c))
    return {
        "numel": n,
        "mean": total * factor / n,
        "min": lo,
        "max": hi,
        "zero_frac": (n - nonzero * factor) / n,
    }


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


def fused_vector(x: torch.Tensor) -> tuple[float, ...] | None:
    """The statistics vector of a non-empty float32/float64 tensor from its fast sums, read in
    one transfer; None where :func:`sums_vector` says the careful path must decide."""
    lo, hi = torch.aminmax(x)
    parts = (
        x.sum(),
        torch.linalg.vector_norm(x, 2),
        torch.linalg.vector_norm(x, 1),
        lo,
        hi,
        torch.count_nonzero(x),
        *near_counts(x.abs()),
    )
    if x.device.type == "cpu":  # .item() is ~0.1 us on the CPU and never synchronises
        total, l2, l1, low, high, nonzero, near_zero, near_one = (p.item() for p in parts)
    else:  # float64: counts past 2**24 stay exact
        values = torch.stack([p.double() for p in parts]).tolist()
        total, l2, l1, low, high, nonzero, near_zero, near_one = values
    near = (near_zero, near_one)
    return sums_vector(x.numel(), total, l2, l1, low, high, nonzero, near)


def chunked_vector(x: torch.Tensor) -> tuple[float, ...] | None:
    """The statistics vector of a non-empty contiguous CPU tensor from its fast sums, chunk by
    chunk; None where :func:`sums_vector` says the careful path must decide.

    Each chunk is reduced while it sits in cache, and ``|x|``, the near-value flags and the
    nonzero flags are built in reused scratch buffers with vectorised in-place ops: the L1 and
    L0 reduction kernels are not vectorised and cost as much as all the others together (and
    boolean masks three times as much as flags of the chunk's dtype). Partial results are
    combined in float64. NaN or Inf poison the sum or the squares, which sends the tensor to
    the careful path (so the min/max combination never has to order NaN).
    """
    total = squares = l1 = nonzero = near_zero = near_one = 0.0
    lo, hi = math.inf, -math.inf
    for chunk in x.reshape(-1).split(CHUNK):
        part = scratch(x.dtype, chunk.numel())
        low, high = torch.aminmax(chunk)
        total += chunk.sum().item()
        squares += torch.linalg.vector_norm(chunk).item() ** 2
        lo, hi = min(lo, low.item()), max(hi, high.item())
        torch.abs(chunk, out=part)
        l1 += part.sum().item()
        zero, one = near_counts(part, flags=scratch(x.dtype, chunk.numel(), 1))
        near_zero, near_one = near_zero + zero.item(), near_one + one.item()
        nonzero += part.sign_().sum().item()
    near = (near_zero, near_one)
    return sums_vector(x.numel(), total, math.sqrt(squares), l1, lo, hi, nonzero, near)


def scratch(dtype: torch.dtype, numel: int, which: int = 0) -> torch.Tensor:
    """``numel`` elements of a per-thread, per-dtype scratch buffer (kept and grown, never
    shrunk: no page faults for the next chunk); ``which`` tells apart buffers used at once."""
    buffers: dict[Any, torch.Tensor] = _LOCAL.__dict__.setdefault("buffers", {})
    buffer = buffers.get((dtype, which))
    if buffer is None or buffer.numel() < numel:
        with torch.inference_mode(False):  # a normal tensor, writable in and out of that mode
            buffer = buffers[dtype, which] = torch.empty(max(numel, CHUNK), dtype=dtype)
    return buffer[:numel]


def needs_careful(n: int, total: float, l2: float, lo: float, hi: float) -> bool:
    """Whether the fast sums cannot give exact statistics (see :func:`finite_stats`)."""
    if not (math.isfinite(total) and math.isfinite(l2) and math.isfinite(lo) and math.isfinite(hi)):
        return True  # NaN/Inf present (or the squares overflowed)
    squares = l2 * l2
    mean = total / n
    # |mean| >> std: the difference of squares would lose the spread to rounding.
    return n > 1 and squares - n * mean * mean < 1e-2 * squares


def finite_stats(x: torch.Tensor, n: int) -> dict[str, float]:
    """The careful path: count NaN/Inf, then reduce the finite values in float64 (``n`` is
    ``x``'s element count)."""
    return stats_from_kernel(torch_vector(x))


def device_vector(x: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Statistics of an accelerator tensor as a float64 vector that stays on the device.

    No value is read back here (no host synchronisation): the collector concatenates the
    vectors of a whole step and transfers them once. Float tensors get the careful statistics
    unconditionally (finite mask, two-pass std), since the values are gone by the time a fast
    pass could tell that they were needed. Returns the kind (``float``, ``int``, ``bool``) that
    :func:`stats_from_vector` needs to read the vector back.
    """
    if x.numel() > BIG_NUMEL:
        return _device_parts(x)
    return _device_part(x)


def _device_parts(x: torch.Tensor) -> tuple[str, torch.Tensor]:
    """:func:`device_vector` of a big tensor: one vector per chunk of its base (see
    :func:`expanded_base`), concatenated, the repeat factor first; the chunks' temporaries
    are bounded by ``BIG_CHUNK`` elements, and :func:`stats_from_vector` merges them."""
    base, factor = expanded_base(x)
    kind = "bool"
    parts = [torch.full((1,), float(factor), dtype=torch.float64, device=x.device)]
    for chunk in chunks(memory_order(base)):
        kind, vector = _device_part(chunk)
        parts.append(vector)
    return f"{kind}*", torch.cat(parts)


def _device_part(x: torch.Tensor) -> tuple[str, torch.Tensor]:
    """The vector of :func:`device_vector` for one tensor (or one chunk of a big one)."""
    if x.dtype == torch.bool:
        return "bool", torch.count_nonzero(x).double().reshape(1)
    if not x.is_floating_point():
        lo, hi = torch.aminmax(x)
        ints: list[Any] = [None] * INT_SIZE
        ints[IntStat.SUM], ints[IntStat.MIN], ints[IntStat.MAX] = x.sum(dtype=torch.float64), lo, hi
        ints[IntStat.NONZERO] = torch.count_nonzero(x)
        return "int", torch.stack([p.double() for p in ints])
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    finite = torch.isfinite(x)
    # Counts summed straight into float64: no conversion kernel for them below.
    m = finite.sum(dtype=torch.float64)
    xz = torch.where(finite, x, 0.0)
    total = xz.sum(dtype=torch.float64)
    mean = total / m.clamp(min=1)
    spread = torch.linalg.vector_norm(torch.where(finite, x - mean.to(x.dtype), 0.0))
    near_zero, near_one = near_counts(x.abs())  # NaN and ±Inf fall in neither band
    parts = make_vector(  # tensors in the vector's places (make_vector only orders them)
        numel=torch.full((), x.numel(), dtype=torch.float64, device=x.device),
        finite=m,
        nans=torch.isnan(x).sum(dtype=torch.float64),
        total=total,
        spread=spread,
        l2=torch.linalg.vector_norm(xz),
        l1=xz.abs().sum(dtype=torch.float64),  # (a float32 norm lost the small values)
        nonzero=torch.count_nonzero(xz),
        lo=torch.where(finite, x, math.inf).amin(),
        hi=torch.where(finite, x, -math.inf).amax(),
        near_zero=near_zero,
        near_one=near_one,
    )
    return "float", torch.stack([p.double() for p in parts])


#: Length of each kind's vector from :func:`device_vector`.
VECTOR_SIZE = {"bool": 1, "int": INT_SIZE, "float": SIZE}


def stats_from_vector(kind: str, n: int, v: list[float]) -> dict[str, float]:
    """Read back a vector made by :func:`device_vector` for a tensor of ``n`` elements."""
    if kind.endswith("*"):
        return _merge_device_parts(kind[:-1], n, v)
    if kind == "bool":
        return {"numel": n, "true_frac": v[0] / n}
    if kind == "int":
        nonzero = int(v[IntStat.NONZERO])
        return _int_dict(n, v[IntStat.SUM], v[IntStat.MIN], v[IntStat.MAX], nonzero)
    return stats_from_kernel(v)


def _merge_device_parts(kind: str, n: int, v: list[float]) -> dict[str, float]:
    """The statistics of a big device tensor from its chunks' vectors (see _device_parts:
    the repeat factor, then one vector per chunk)."""
    factor, size = int(v[0]), VECTOR_SIZE[kind]
    parts = [v[at : at + size] for at in range(1, len(v), size)]
    if kind == "bool":
        return {"numel": n, "true_frac": sum(p[0] for p in parts) * factor / n}
    if kind == "int":
        total = sum(p[IntStat.SUM] for p in parts)
        nonzero = sum(p[IntStat.NONZERO] for p in parts)
        return {
            "numel": n,
            "mean": total * factor / n,
            "min": min(p[IntStat.MIN] for p in parts),
            "max": max(p[IntStat.MAX] for p in parts),
            "zero_frac": (n - nonzero * factor) / n,
        }
    return stats_from_kernel(repeat_vector(merge_vectors(parts), factor))


def as_real(value: Any) -> float:
    """``value`` as a float when it is one real number (a bool, an int, a float, NaN included,
    or a one-element real tensor); TypeError saying what it is otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.layout != torch.strided:
            raise TypeError(f"returned a tensor of shape {tuple(value.shape)}, {value.dtype}")
        return float(value.detach().reshape(()).item())
    if isinstance(value, numbers.Real):  # bool, int, float, numpy scalars, Fraction, Decimal
        try:
            return float(value)
        except (OverflowError, ValueError) as exc:  # an int too big for a float
            raise TypeError(f"returned {type(value).__name__} {value!r:.80}: {exc}") from None
    if value is None:
        return _fail("returned None")
    if isinstance(value, str):
        return _fail(f"returned a string {value!r:.80}")
    return _fail(f"returned {type(value).__name__} {value!r:.80}, not a real number")


def _fail(why: str) -> float:
    raise TypeError(why)


#: An extra statistic that takes this long in one step is reported as slow (once).
SLOW_SECONDS = 1.0
#: A first call gets a copy of tensors up to this size, to catch in-place changes harmlessly.
PROBATION_NUMEL = 1 << 22


class ExtraStats:
    """Runs the extra statistics of a trace on float tensors; a statistic that fails, returns
    something other than one real number, changes its input or is slow costs only itself, and
    the run's notes say so once."""

    def __init__(self, fns: Mapping[str, StatFn], note: Note = _ignore) -> None:
        self.fns = dict(fns)
        self.note = note
        self._tried: set[str] = set()  # statistics that have had their first (copied) tensor
        self._spent = dict.fromkeys(self.fns, 0.0)  # seconds in this step
        self._calls = dict.fromkeys(self.fns, 0)

    def __bool__(self) -> bool:
        return bool(self.fns)

    def __call__(self, t: torch.Tensor) -> dict[str, float]:
        """The extra statistics of ``t`` (those that gave a real number)."""
        if not self.fns or t.numel() == 0 or skip_reason(t) is not None:
            return {}
        if not t.is_floating_point():
            self._note_dtype(t)
            return {}
        x = t.detach()
        values: dict[str, float] = {}
        for name, fn in list(self.fns.items()):
            value = self._run(name, fn, x)
            if value is not None:
                values[name] = value
        return values

    def _run(self, name: str, fn: StatFn, x: torch.Tensor) -> float | None:
        probe = name not in self._tried and x.numel() <= PROBATION_NUMEL
        self._tried.add(name)
        arg = x.clone() if probe else x
        version = _version(arg)
        started = time.perf_counter()
        try:
            with torch.no_grad():
                raw = fn(arg)
        except Exception as exc:  # a plugin's statistic must never break the user's forward
            self._failed(name, f"raised {one_line(exc)}")
            return None
        finally:
            self._spent[name] = self._spent.get(name, 0.0) + time.perf_counter() - started
            self._calls[name] = self._calls.get(name, 0) + 1
        if version is not None and _version(arg) != version:
            self._changed_input(name, probe)
            return None
        try:
            return as_real(raw)
        except Exception as exc:  # the value's own float() may raise anything
            self._failed(name, str(exc) if isinstance(exc, TypeError) else one_line(exc))
            return None

    def _failed(self, name: str, why: str) -> None:
        self.note(
            f"extra-failed:{name}",
            f"extra statistic '{name}' {why}: it is left out of the records of such tensors "
            "(the built-in statistics are kept)",
        )

    def _changed_input(self, name: str, probe: bool) -> None:
        del self.fns[name]
        harm = (
            "it was caught on a copy, so the model's values were not changed"
            if probe
            else "the model saw the changed values of one tensor"
        )
        self.note(
            f"extra-inplace:{name}",
            f"extra statistic '{name}' changes its input in place ({harm}); it is switched off "
            "for the rest of the run: a statistic must only read the tensor",
        )

    def _note_dtype(self, t: torch.Tensor) -> None:
        dtype = str(t.dtype).removeprefix("torch.")
        names = ", ".join(f"'{n}'" for n in self.fns)
        self.note(
            f"extra-dtype:{dtype}",
            f"extra statistics ({names}) are computed for floating-point tensors only: "
            f"{dtype} tensors get the built-in statistics alone",
        )

    def end_step(self, step: int | None = None) -> None:
        """Report a statistic that was slow in the step that just ended; start the next."""
        for name, spent in self._spent.items():
            if spent > SLOW_SECONDS:
                at = f" in step {step}" if step is not None else ""
                self.note(
                    f"extra-slow:{name}",
                    f"extra statistic '{name}' took {spent:.1f} s over {self._calls[name]:,} "
                    f"tensors{at}: it runs on every float tensor of every traced step "
                    "(trace fewer steps with every=N, or make it cheaper)",
                )
        self._spent = dict.fromkeys(self.fns, 0.0)
        self._calls = dict.fromkeys(self.fns, 0)


def _version(x: torch.Tensor) -> int | None:
    try:
        return tensor_version(x)
    except RuntimeError:  # an inference tensor has no version counter
        return None


def extra_stats(t: torch.Tensor, extra: Mapping[str, StatFn]) -> dict[str, float]:
    """Run the extra statistics on a float tensor; a failing statistic is left out, not raised."""
    return ExtraStats(extra)(t)
