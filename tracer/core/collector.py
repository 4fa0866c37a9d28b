"""Per-step statistics collector: deduplication by tensor identity and batched small tensors.

The hooks ask :meth:`StatsCollector.request` for the statistics of each tensor they see and get
an integer back, the tensor's index in the step; :meth:`StatsCollector.flush` at the end of the
step reduces everything and returns a :class:`StepStats`, where each index reads its statistics.

Nothing here keeps a user's tensor alive. Small tensors are *copied* into reusable row buffers
(their values at hook time, which is also what makes in-place ops after the hook harmless); big
tensors are reduced at once. The identity cache maps a tensor's key to its index, with a weak
reference and the tensor's version counter kept per index: the key alone is not enough because
CPython reuses the id of a freed object (as the allocator reuses a freed ``data_ptr``), the weak
reference proves the entry still describes the same live object without owning it, and the
version counter catches in-place updates (a BatchNorm output that an in-place ReLU overwrites).

Nothing a tensor does makes :meth:`StatsCollector.request` raise: a tensor whose statistics
cannot be computed gets ``numel`` only, and :attr:`StatsCollector.notes` says why, once per
reason (the trace hands new notes to its sink after each step).

Cost model: the hooks run about as often as the model's kernels, and every container that
lives through a step brings Python's full garbage collections nearer (why: tracer.core.step_state).
So a step's state is a few flat lists of numbers: per tensor one weak reference and nothing else
the collector tracks; the kernel's statistics vectors stay in one flat buffer of doubles (a
``bytearray`` during the step, an ``array('d')`` after it: no Python float per number), the
batched rows' statistics in one flat list of floats per row buffer, until a record reads them.

Where the compiled probe is built, :meth:`StatsCollector.request` is its ``StatsRequest``: for a
plain CPU float32/float64 tensor that the kernel reads where it lies (the common case) it does
the version, the identity key, the dedup lookup, the weak reference, the kernel and the new
index in one call, on the collector's own tables and with :func:`_identity`'s keys; every other
tensor it hands to the Python request unchanged.

Every path leaves a float tensor's statistics as one statistics vector laid out as
:class:`tracer.core.stats_layout.Stat` (the kernel's, the row buffers' rows, the accelerator
vectors), read by :func:`~tracer.core.stats.stats_from_kernel`.
"""

from __future__ import annotations

import ctypes
import struct
import weakref
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from tracer.core.probe import compiled_float_stats, compiled_stats_request
from tracer.core.stats import (
    BIG_NUMEL,
    CHUNK_NUMEL,
    KERNEL_DTYPES,
    SMALL_NUMEL,
    ExtraStats,
    StatFn,
    compiled_kernel,
    dense_order,
    device_vector,
    finite_stats,
    kernel_vector,
    near_counts,
    note_failed,
    note_skipped,
    scratch,
    skip_reason,
    small_stats,
    stats_from_vector,
    tensor_stats,
    vector_stats,
    zero_stats,
)
from tracer.core.stats_layout import (
    FINITE,
    L1,
    L2,
    MAX,
    MIN,
    NAN,
    NEAR_ONE,
    NEAR_ZERO,
    NONZERO,
    NUMEL,
    SIZE,
    SPREAD,
    SUM,
)
from tracer.core.torch_compat import is_zerotensor, tensor_base, tensor_version

_BATCHED_DTYPES = {
    torch.float32: torch.float32,
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.float64: torch.float64,
}
_STRIDED = torch.strided
#: Tensor types whose memory is their values (others may be fakes or wrappers).
_PLAIN = frozenset({torch.Tensor, torch.nn.Parameter, torch.nn.Buffer})
_ITEMSIZE = {torch.float32: 4, torch.float64: 8}  # what the kernel reads as it is
#: The row-buffer number of a tensor whose kernel vector is in ``StepStats._vectors``.
_VECTOR = -2
#: The row-buffer number of an empty, integer or bool tensor whose statistics the compiled
#: request packed into a vector's space in ``StepStats._vectors`` (see :func:`small_stats`).
_SMALL = -3
#: A kernel vector as the bytes the collector's vector buffer holds (native doubles).
_pack_vector = struct.Struct(f"{SIZE}d").pack
#: A view's base whose metadata the compiled request reads as the Python getters would.
_PLAIN_BASES = (torch.Tensor, torch.nn.Parameter, torch.nn.Buffer)


class StepStats:
    """The statistics of one flushed step, read by index (the values of :meth:`request`).

    Kernel vectors and batched rows are kept as flat lists of statistics vectors and turned
    into a mapping only when a record asks for them; everything else is a ready mapping.
    """

    __slots__ = ("_done", "_extra", "_group", "_row", "_sums", "_vectors")

    def __init__(
        self,
        group: list[int],
        row: list[int],
        sums: list[list[float]],
        done: dict[int, dict[str, float]],
        extra: dict[int, dict[str, float]],
        vectors: Sequence[float] | None = None,
    ) -> None:
        self._group, self._row, self._sums = group, row, sums
        self._done, self._extra = done, extra
        self._vectors: Sequence[float] = vectors if vectors is not None else []

    def get(self, index: int) -> dict[str, float]:
        """The statistics (built-in and extra) of the tensor with this index, as a new dict."""
        value = self._done.get(index)
        if value is None:
            group, i = self._group[index], self._row[index]
            if group == _VECTOR:
                value = vector_stats(self._vectors, i)
            elif group == _SMALL:
                value = small_stats(self._vectors, i)
            elif group < 0:
                return dict(self._extra.get(index, {}))
            else:
                # The row buffer's mask already sent every row that needs it to the careful
                # path.
                value = vector_stats(self._sums[group], i * SIZE)
        extra = self._extra.get(index)
        return {**value, **extra} if extra else value


class _Rows:
    """Row buffer on the CPU for small tensors of one size and dtype: one flat row per tensor.

    The rows of a step pass through one chunk of at most ``CHUNK_NUMEL`` elements, reduced as
    soon as it is full: the copies and the reduction passes then stay in the cache, and the
    buffer's memory does not grow with the number of calls in a step.
    """

    def __init__(self, number: int, numel: int, dtype: torch.dtype) -> None:
        self.number = number  # this buffer's place in the collector's list
        self.numel, self.dtype = numel, dtype
        self.nbytes = numel * torch.empty((), dtype=dtype).element_size()
        self.per_chunk = max(1, CHUNK_NUMEL // numel)
        self.chunk = self.out = torch.empty(0)
        self.addresses: list[int] = []  # data_ptr of each row of the chunk
        self.count = 0  # rows of this step so far
        self.indices: list[int] = []  # the tensor index of each row in the chunk now
        self.sums: list[float] = []  # one statistics vector per reduced row of this step
        self.careful: dict[int, dict[str, float]] = {}  # tensor index -> exact statistics

    def add(self, t: torch.Tensor, tensor_index: int) -> int:
        """Copy ``t``'s values into the next row and return the row's number in the step."""
        index = len(self.indices)
        if index == len(self.addresses):
            self._make_room(index)
            index = 0
        if t.dtype is self.dtype and t.is_contiguous():
            # A plain memory copy skips copy_()'s dispatch (about 0.3 us of 1.6 per tensor).
            # Safe: a CPU tensor of our dtype and size, contiguous, into our own row.
            source = t.data_ptr()
            if not source:  # no memory behind it (the caller only sends plain tensors)
                raise RuntimeError("the tensor has no memory to copy")
            ctypes.memmove(self.addresses[index], source, self.nbytes)
        else:  # converts float16/bfloat16, follows strides; detached: no graph to the copy
            self.chunk[index].view(t.shape).copy_(t.detach())
        self.indices.append(tensor_index)
        self.count += 1
        return self.count - 1

    def _make_room(self, used: int) -> None:
        """Reduce the full chunk; grow it geometrically up to ``per_chunk`` rows (a size seen
        once costs a few rows, not a whole chunk)."""
        self.reduce()
        size = min(self.per_chunk, max(4, 2 * used))
        if size != len(self.addresses):
            with torch.inference_mode(False):  # normal tensors, usable in and out of it
                self.chunk = torch.empty((size, self.numel), dtype=self.dtype)
                self.out = torch.empty((size, SIZE), dtype=self.dtype)
                # The same in every row, written once: rows with a NaN or Inf take the careful
                # path, so every row read from here has only finite values.
                self.out[:, NUMEL] = self.out[:, FINITE] = self.numel
                self.out[:, NAN] = 0
            start = self.chunk.data_ptr()
            self.addresses = [start + row * self.nbytes for row in range(size)]

    def reduce(self) -> None:
        """Reduce the rows in the chunk into ``sums`` (and ``careful``) and empty it."""
        count = len(self.indices)
        if not count:
            return
        with torch.no_grad():
            block, out = self.chunk[:count], self.out[:count]
            for row in _reduce(block, out):
                self.careful[self.indices[row]] = finite_stats(block[row], self.numel)
            self.sums.extend(_finish(block, out, self.numel))
        self.indices.clear()

    def take(self) -> tuple[list[float], dict[int, dict[str, float]]]:
        """The step's results (after reducing what is left); the buffer starts a new step."""
        try:
            self.reduce()
            return self.sums, self.careful
        finally:
            self.discard()

    def discard(self) -> None:
        """Forget this step's rows and results."""
        self.indices.clear()
        self.count, self.sums, self.careful = 0, [], {}


def _reduce(block: torch.Tensor, out: torch.Tensor) -> list[int]:
    """Row sums of our own buffer ``block`` into ``out``; returns the rows to reduce carefully.

    ``out`` gets one statistics vector per block row (:mod:`tracer.core.stats_layout`): here
    its sum, L2 norm, min and max, the rest in :func:`_finish`. The returned rows (usually
    none) are those whose fast sums cannot give exact statistics: a non-finite value, or a
    spread too small for the difference of squares (the test of
    :func:`~tracer.core.stats.needs_careful`, written as ``(sum / l2)^2 > 0.99 n`` so that it
    cannot overflow). The caller reduces them from their values before :func:`_finish`
    overwrites the block; this mask is the only test, :meth:`StepStats.get` trusts it.
    """
    n = block.shape[1]
    total, l2 = out[:, SUM], out[:, L2]
    torch.sum(block, 1, out=total)
    torch.linalg.vector_norm(block, 2, dim=1, out=l2)
    torch.amin(block, 1, out=out[:, MIN])
    torch.amax(block, 1, out=out[:, MAX])
    # A sum is finite exactly when all its terms are (inf - inf is NaN).
    bad = ~(total + l2 + out[:, MIN] + out[:, MAX]).isfinite()
    if n > 1:
        ratio = total / l2
        bad |= ratio.square_() > 0.99 * n
    if not bad.any():
        return []
    return bad.nonzero().flatten().tolist()


def _finish(block: torch.Tensor, out: torch.Tensor, n: int) -> list[float]:
    """The rest of each row's statistics vector into ``out`` (L1 norms, near-value and nonzero
    counts from ``|x|``, its band flags in a scratch buffer and its 0/1 signs built in place:
    boolean temporaries and the unvectorised L1/L0 kernels cost twice as much), then every
    row's vector as one flat list."""
    torch.sum(block.abs_(), 1, out=out[:, L1])
    flags = scratch(block.dtype, block.numel(), 1).view(block.shape)
    out[:, NEAR_ZERO], out[:, NEAR_ONE] = near_counts(block, 1, flags)
    torch.sum(block.sign_(), 1, out=out[:, NONZERO])
    # The spread from the difference of squares, in float64 as the other torch sums paths
    # (exact enough: the mask of _reduce sent the rows where it would cancel away).
    # NUMEL, FINITE and NAN were written when the buffer was made.
    total = out[:, SUM].double()
    spread = out[:, L2].to(torch.float64, copy=True)  # a copy: squared in place
    spread.mul_(spread).addcmul_(total, total, value=-1.0 / n).clamp_(min=0.0).sqrt_()
    out[:, SPREAD] = spread
    return out.view(-1).tolist()


def _by_kernel(
    kernel: Callable[[int, int, int], tuple[float, ...]], t: torch.Tensor, n: int
) -> Sequence[float] | None:
    """The compiled kernel's vector of a CPU tensor (a float32/float64 contiguous one read
    where it lies while ``t`` keeps its memory alive; others converted by kernel_vector), or
    None for a tensor it does not take."""
    if not n or t.layout is not _STRIDED or t.is_nested:
        return None
    size = _ITEMSIZE.get(t.dtype)
    if size is not None and t.is_contiguous():
        try:
            return kernel(t.data_ptr(), n, size)
        except (RuntimeError, NotImplementedError, ValueError):  # a subclass without storage:
            return None  # torch's reductions (through its dispatch) take it
    return kernel_vector(t) if t.dtype in KERNEL_DTYPES else None


def _identity(t: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """The object whose lifetime vouches for the cache entry, and the entry's key.

    A contiguous view is keyed by its root (``_base``, shared by every view of the same
    memory) and the part of it that it covers: ``x.view(-1, 512)`` holds exactly the elements
    of ``x`` and so has its statistics (they do not depend on order). A view of the whole of a
    contiguous root has the root's own key. Other tensors are keyed by their identity.
    """
    base = tensor_base(t)
    if base is None or not t.is_contiguous():
        return t, id(t)
    offset, n, dtype = t.storage_offset(), t.numel(), t.dtype
    if (
        offset == base.storage_offset()
        and n == base.numel()
        and dtype == base.dtype
        and base.is_contiguous()
    ):
        return base, id(base)
    return base, (id(base), offset, n, dtype)


class StatsCollector:
    """Computes (or schedules) statistics for the tensors of one step, each distinct tensor once."""

    #: The index of ``t``'s statistics as it is now (a tensor seen before keeps its index): the
    #: compiled probe's request where it is built (it hands what it does not take to
    #: :meth:`_request`), else :meth:`_request` itself.
    request: Callable[[torch.Tensor], int]

    def __init__(
        self, extra: Mapping[str, StatFn] | None = None, *, defer_cpu: bool = False
    ) -> None:
        # Facts for the run's notes (statistics skipped and why, extra statistics that failed):
        # the first text of each key, in order; take_notes() hands over the new ones.
        self.notes: dict[str, str] = {}
        self._told = 0
        self.extra = ExtraStats(extra or {}, self.note)
        # CPU tensors are reduced at once (reading a CPU value back is free); defer_cpu sends
        # them through the accelerator path instead, which lets that path be tested anywhere.
        self.defer_cpu = defer_cpu
        # The compiled kernel reduces a CPU float tensor in one pass at once; without it, small
        # tensors go through the row buffers and big ones through torch reductions.
        self._kernel = compiled_kernel() if not defer_cpu else None
        # The same kernel reached from the C++ tensor (tracer.core._probe) when that was built: the
        # address, size and layout checks without torch's Python getters.
        self._direct = compiled_float_stats() if self._kernel is not None else None
        # The whole request of such a tensor in one compiled call, on this collector's tables
        # (bound again at each step's start).
        make = compiled_stats_request() if self._direct is not None else None
        self._fast = (
            make(self._request, _PLAIN_BASES, _VECTOR, _SMALL) if make is not None else None
        )
        self.request = self._fast.request if self._fast is not None else self._request
        self._rows: dict[tuple[Any, ...], _Rows] = {}
        self._buffers: list[_Rows] = []  # the row buffers, numbered as in self._group
        self._reset()

    def note(self, key: str, text: str) -> None:
        """Add a fact to the run's notes, once per ``key``."""
        if key not in self.notes:
            self.notes[key] = text

    def take_notes(self) -> list[str]:
        """The notes added since the last call."""
        texts = list(self.notes.values())[self._told :]
        self._told += len(texts)
        return texts

    @property
    def uses_kernel(self) -> bool:
        """Whether CPU float tensors go to the compiled kernel (else torch reductions)."""
        return self._kernel is not None

    def _reset(self) -> None:
        # Per index: row buffer number (-1: not batched), row in it, owner, version.
        self._group: list[int] = []
        self._row: list[int] = []
        self._owner: list[weakref.ref[Any] | None] = []
        self._version: list[int] = []
        self._seen: dict[Any, int] = {}
        self._done: dict[int, dict[str, float]] = {}
        self._extra: dict[int, dict[str, float]] = {}
        # Kernel vectors, stats_layout.SIZE native doubles each (an array of them once the
        # step is flushed).
        self._vectors = bytearray()
        # Accelerator tensors: statistics vectors still on the device, read back at flush.
        self._pending: list[tuple[int, str, int, torch.Tensor]] = []
        if self._fast is not None:  # extra statistics: every tensor the Python way
            self._fast.bind(
                self._group,
                self._row,
                self._owner,
                self._version,
                self._seen,
                self._vectors,
                not self.extra,
            )

    def _request(self, t: torch.Tensor) -> int:
        """The index of ``t``'s statistics as it is now (a tensor seen before keeps its index),
        the Python way (every tensor where the compiled probe is missing)."""
        try:
            version = tensor_version(t)
        except RuntimeError:  # inference tensors have no version counter: no dedup
            return self._guarded(t, None, 0)
        except Exception as exc:  # a tensor whose metadata cannot be read: the notes say why
            return self._failed(t, None, 0, exc)
        try:
            owner, key = _identity(t)
        except Exception as exc:  # a subclass whose views cannot be inspected
            return self._failed(t, None, 0, exc)
        index = self._seen.get(key)
        if index is not None:
            ref = self._owner[index]
            if ref is not None and ref() is owner and self._version[index] == version:
                return index
        try:
            ref = weakref.ref(owner)
        except TypeError:  # a subclass without weak references: no dedup
            return self._guarded(t, None, 0)
        try:  # inline rather than _guarded: this is the hot path
            index = self._compute(t, ref, version)
        except Exception as exc:
            index = self._failed(t, ref, version, exc)
        self._seen[key] = index
        return index

    def _guarded(self, t: torch.Tensor, ref: weakref.ref[Any] | None, version: int) -> int:
        """:meth:`_compute`; an error in it costs this tensor its statistics, and is noted."""
        try:
            return self._compute(t, ref, version)
        except Exception as exc:
            return self._failed(t, ref, version, exc)

    def _failed(
        self, t: torch.Tensor, ref: weakref.ref[Any] | None, version: int, exc: Exception
    ) -> int:
        """An index with the element count alone (if readable), the reason in the notes."""
        note_failed(self.note, t, exc)
        index = self._new_index(ref, version, -1, 0)
        try:
            self._done[index] = {"numel": t.numel()}
        except Exception:  # not even the element count can be read
            self._done[index] = {}
        return index

    def flush(self) -> StepStats:
        """Reduce everything requested in this step; the collector is then ready for the next."""
        sums: list[list[float]] = []
        try:
            with torch.no_grad():
                for rows in self._buffers:
                    values, careful = rows.take()
                    sums.append(values)
                    self._done.update(careful)
                self._flush_pending()
            self.extra.end_step()
            vectors = array("d")
            vectors.frombytes(self._vectors)  # 2 us for 1,000 vectors
            return StepStats(self._group, self._row, sums, self._done, self._extra, vectors)
        except BaseException:
            for rows in self._buffers:
                rows.discard()  # the next step starts empty
            raise
        finally:
            self._reset()

    def _flush_pending(self) -> None:
        """One device-to-host transfer for every accelerator tensor of the step."""
        if not self._pending:
            return
        by_device: dict[torch.device, list[tuple[int, str, int, torch.Tensor]]] = {}
        for item in self._pending:
            by_device.setdefault(item[3].device, []).append(item)
        for items in by_device.values():
            values = torch.cat([vector for *_, vector in items]).tolist()
            offset = 0
            for index, kind, n, vector in items:
                size = vector.numel()
                self._done[index] = stats_from_vector(kind, n, values[offset : offset + size])
                offset += size

    def _new_index(self, ref: weakref.ref[Any] | None, version: int, group: int, row: int) -> int:
        index = len(self._group)
        self._group.append(group)
        self._row.append(row)
        self._owner.append(ref)
        self._version.append(version)
        return index

    def _compute(self, t: torch.Tensor, ref: weakref.ref[Any] | None, version: int) -> int:
        """The index of ``t``'s statistics from the first path that takes it: the compiled
        probe's kernel call, the kernel called from here, a row buffer, torch's reductions, or
        a device vector (each path leaves the one statistics vector layout)."""
        direct = self._direct
        if direct is not None:  # the common case in one compiled call (None: not that case)
            found = direct(t)
            if found is not None:
                return self._kernel_index(t, ref, version, found)
        if type(t) not in _PLAIN and skip_reason(t) == "fake":  # its memory is no memory
            note_skipped(self.note, "fake", t)
            index = self._new_index(ref, version, -1, 0)
            self._done[index] = {"numel": t.numel()}
            return index
        n = t.numel()
        if n > BIG_NUMEL and t.is_cpu and not self.defer_cpu:  # never copied (nor negated)
            return self._big(t, ref, version, n)
        if t.is_neg():  # a negated view: its memory holds the values' negatives
            t = t.resolve_neg()
        elif is_zerotensor(t):  # all zeros and no memory behind them (a small one here)
            t = t.clone()
        if not t.is_cpu or self.defer_cpu:
            return self._by_device(t, ref, version, n)
        kernel = self._kernel
        if kernel is not None:
            values = _by_kernel(kernel, t, n)
            if values is not None:
                return self._kernel_index(t, ref, version, values)
        # Quantized and complex dtypes are not listed; a tensor subclass is reduced through
        # torch (its dispatch decides), never copied from its memory.
        target = _BATCHED_DTYPES.get(t.dtype) if type(t) in _PLAIN else None
        if target is not None and 0 < n <= SMALL_NUMEL and t.layout is _STRIDED and not t.is_nested:
            return self._by_rows(t, ref, version, n, target)
        return self._by_torch(t, ref, version)

    def _by_rows(
        self,
        t: torch.Tensor,
        ref: weakref.ref[Any] | None,
        version: int,
        n: int,
        target: torch.dtype,
    ) -> int:
        """A small CPU float tensor copied into the row buffer of its size and dtype."""
        rows = self._rows.get((n, target))
        if rows is None:
            rows = _Rows(len(self._buffers), n, target)
            self._rows[n, target] = rows
            self._buffers.append(rows)
        try:
            row = rows.add(t, len(self._group))
        except RuntimeError as exc:  # no memory to read: a functorch tensor under vmap
            return self._failed(t, ref, version, exc)
        index = self._new_index(ref, version, rows.number, row)
        if self.extra:
            self._add_extra(index, t)
        return index

    def _by_torch(self, t: torch.Tensor, ref: weakref.ref[Any] | None, version: int) -> int:
        """Any other CPU tensor: torch's reductions now (integer, bool, subclasses, ...)."""
        with torch.no_grad():
            computed = tensor_stats(t, self.note)
        index = self._new_index(ref, version, -1, 0)
        self._done[index] = computed
        if self.extra:
            self._add_extra(index, t)
        return index

    def _by_device(
        self, t: torch.Tensor, ref: weakref.ref[Any] | None, version: int, n: int
    ) -> int:
        """An accelerator tensor (or any, with ``defer_cpu``): a vector left on its device,
        read back with the step's others at :meth:`flush`."""
        index = self._new_index(ref, version, -1, 0)
        self._add_extra(index, t)
        reason = skip_reason(t) if n else None
        if n == 0 or reason is not None:
            if reason is not None:
                note_skipped(self.note, reason, t)
            self._done[index] = {"numel": n}
            return index
        with torch.no_grad():
            try:
                kind, vector = device_vector(t.detach())
            except (RuntimeError, TypeError, NotImplementedError) as exc:  # exotic dtype
                note_failed(self.note, t, exc)
                self._done[index] = {"numel": n}
                return index
        self._pending.append((index, kind, n, vector))
        return index

    def _big(self, t: torch.Tensor, ref: weakref.ref[Any] | None, version: int, n: int) -> int:
        """A big CPU tensor (or a memoryless zero tensor): read where it lies when the kernel
        can, else reduced a chunk at a time (see :func:`~tracer.core.stats.big_stats`)."""
        kernel = self._kernel
        if (
            kernel is not None
            and (t.dtype is torch.float32 or t.dtype is torch.float64)
            and t.layout is _STRIDED
            and not t.is_neg()
            and not is_zerotensor(t)
        ):
            dense = dense_order(t.detach())
            if dense.is_contiguous():
                values = kernel(dense.data_ptr(), n, dense.element_size())
                return self._kernel_index(t, ref, version, values)
        index = self._new_index(ref, version, -1, 0)
        with torch.no_grad():
            if is_zerotensor(t) and t.layout is _STRIDED:
                self._done[index] = zero_stats(t, n)
            else:
                self._done[index] = tensor_stats(t, self.note)
        if self.extra:
            self._add_extra(index, t)
        return index

    def _kernel_index(
        self, t: torch.Tensor, ref: weakref.ref[Any] | None, version: int, values: Sequence[float]
    ) -> int:
        """A new index for the kernel's statistics ``values`` of ``t``."""
        index = self._new_index(ref, version, _VECTOR, len(self._vectors) // 8)
        self._vectors += _pack_vector(*values)
        if self.extra:
            self._add_extra(index, t)
        return index

    def _add_extra(self, index: int, t: torch.Tensor) -> None:
        if self.extra:
            values = self.extra(t)
            if values:
                self._extra[index] = values
