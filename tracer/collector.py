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

Cost model: a model of many small layers calls the hooks about as often as it launches kernels,
and every container object that lives through a step counts towards Python's full garbage
collections (which walk the whole heap, torch's ~180,000 objects included). So a step's state is
kept in a few flat lists of numbers: per tensor there is one weak reference and nothing else
that the collector tracks; the statistics of the batched rows stay in one flat list of floats
per row buffer until a record reads them.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from tracer.stats import (
    CHUNK_NUMEL,
    SMALL_NUMEL,
    VECTOR_SIZE,
    StatFn,
    device_vector,
    extra_stats,
    finite_stats,
    has_values,
    stats_from_sums,
    stats_from_vector,
    tensor_stats,
)

_BATCHED_DTYPES = {
    torch.float32: torch.float32,
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.float64: torch.float64,
}
#: Values per row in a row buffer's results: sum, l2, l1, min, max, nonzero count.
_SUMS = 6


class StepStats:
    """The statistics of one flushed step, read by index (the values of :meth:`request`).

    Batched rows are kept as one flat list of floats per row buffer and turned into a mapping
    only when a record asks for them; everything else is a ready mapping.
    """

    __slots__ = ("_done", "_extra", "_group", "_numel", "_row", "_sums")

    def __init__(
        self,
        group: list[int],
        row: list[int],
        sums: list[list[float]],
        numel: list[int],
        done: dict[int, dict[str, float]],
        extra: dict[int, dict[str, float]],
    ) -> None:
        self._group, self._row, self._sums, self._numel = group, row, sums, numel
        self._done, self._extra = done, extra

    def __len__(self) -> int:
        return len(self._group)

    def get(self, index: int) -> dict[str, float]:
        """The statistics (built-in and extra) of the tensor with this index, as a new dict."""
        value = self._done.get(index)
        if value is None:
            group = self._group[index]
            if group < 0:
                value = {}
            else:
                start = self._row[index] * _SUMS
                sums = self._sums[group][start : start + _SUMS]
                value = stats_from_sums(self._numel[group], sums) or {}
        extra = self._extra.get(index)
        return {**value, **extra} if extra else dict(value)


class _Rows:
    """Row buffer for small tensors of one shape, dtype and device: one row per tensor."""

    def __init__(
        self, number: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> None:
        self.number = number  # this buffer's place in the collector's list
        self.shape, self.dtype, self.device = shape, dtype, device
        self.numel = max(1, int(torch.Size(shape).numel()))
        self.per_chunk = max(1, CHUNK_NUMEL // self.numel)
        self.chunks: list[torch.Tensor] = []
        self.rows: list[torch.Tensor] = []  # views into the chunks, one per row
        self.addresses: list[int] = []  # data_ptr of each row (CPU only)
        self.used = 0
        self.indices: list[int] = []  # the tensor index of each used row
        self.nbytes = self.numel * torch.empty((), dtype=dtype).element_size()
        self.raw = self.device.type == "cpu"

    def add(self, t: torch.Tensor, tensor_index: int) -> int:
        """Copy ``t``'s values into the next row and return the row's number."""
        index = self.used
        if index == len(self.rows):
            self._grow(index)
        if self.raw and t.dtype is self.dtype and t.is_contiguous():
            # A plain memory copy skips copy_()'s dispatch (about 0.3 us of 1.6 per tensor).
            # Safe: rows are keyed by device (this is a CPU row), same dtype, contiguous
            # source, and the destination is our own preallocated row.
            ctypes.memmove(self.addresses[index], t.data_ptr(), self.nbytes)
        else:
            self.rows[index].copy_(t)  # converts float16/bfloat16, follows strides
        self.used = index + 1
        self.indices.append(tensor_index)
        return index

    def _grow(self, used: int) -> None:
        # Geometric growth: a shape seen once costs a few rows, not a whole 4 MB chunk.
        count = min(self.per_chunk, max(4, used))
        chunk = torch.empty((count, *self.shape), dtype=self.dtype, device=self.device)
        self.chunks.append(chunk)
        rows = chunk.unbind(0)
        self.rows.extend(rows)
        if self.raw:
            self.addresses.extend(row.data_ptr() for row in rows)

    def flush(self, careful: dict[int, dict[str, float]]) -> list[float]:
        """Reduce every used row: ``_SUMS`` floats per row, in one flat list.

        Rows whose fast sums cannot give exact statistics are reduced from their values into
        ``careful`` (keyed by the tensor's index). The buffers stay for the next step.
        """
        start, used, out = 0, self.used, []
        for chunk in self.chunks:
            if start >= used:
                break
            count = min(chunk.shape[0], used - start)
            block = chunk[:count].reshape(count, self.numel)
            first, rows = _reduce(block)
            for row in rows:
                careful[self.indices[start + row]] = finite_stats(block[row], self.numel)
            out.extend(_finish(block, first))
            start += count
        return out


def _plain(t: torch.Tensor) -> bool:
    return t.layout == torch.strided and not t.is_nested


def _reduce(block: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``[sum, l2, l1, min, max, nonzero]`` of each row of our own buffer (overwritten), flat,
    and the rows whose fast sums cannot give exact statistics (NaN/Inf, or a spread too small
    for the fast std: the test of :func:`~tracer.stats.needs_careful`, on all rows at once).

    The caller reduces those rows (usually none) from their values before this overwrites them:
    ``|x|`` and the 0/1 nonzero flags are built in place (``abs_``, then ``sign_``), because
    boolean temporaries and the unvectorised L1/L0 kernels cost twice as much.
    """
    n = block.shape[1]
    lo, hi = block.amin(1), block.amax(1)
    total, l2 = block.sum(1), torch.linalg.vector_norm(block, 2, dim=1)
    first = torch.stack((total, l2, lo, hi), 1).double()
    bad = ~torch.isfinite(first).all(1)
    if n > 1:
        squares = first[:, 1].square()
        bad |= squares - first[:, 0].square() / n < 1e-2 * squares
    careful = bad.nonzero().flatten().tolist()
    return first, careful


def _finish(block: torch.Tensor, first: torch.Tensor) -> list[float]:
    """The flat row results, from :func:`_reduce`'s first sums and two in-place passes."""
    block.abs_()
    l1 = block.sum(1)
    nonzero = block.sign_().sum(1)
    rest = torch.stack((l1, nonzero), 1).double()
    return torch.cat((first[:, :2], rest[:, :1], first[:, 2:], rest[:, 1:]), 1).flatten().tolist()


def _identity(t: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """The object whose lifetime vouches for the cache entry, and the entry's key.

    A contiguous view is keyed by its root (``_base``, shared by every view of the same
    memory), offset, size and dtype: ``x.view(-1, 512)`` holds exactly the elements of ``x``
    and so has its statistics (they do not depend on order). Other tensors are keyed by their
    own identity.
    """
    if not t.is_contiguous():
        return t, id(t)
    base = t._base
    owner = t if base is None else base
    return owner, (id(owner), t.storage_offset(), t.numel(), t.dtype)


class StatsCollector:
    """Computes (or schedules) statistics for the tensors of one step, each distinct tensor once."""

    def __init__(
        self, extra: Mapping[str, StatFn] | None = None, *, defer_cpu: bool = False
    ) -> None:
        self.extra = dict(extra or {})
        # CPU tensors are reduced at once (reading a CPU value back is free); defer_cpu sends
        # them through the accelerator path instead, which lets that path be tested anywhere.
        self.defer_cpu = defer_cpu
        self._rows: dict[tuple[Any, ...], _Rows] = {}
        self._buffers: list[_Rows] = []  # the row buffers, numbered as in self._group
        self._reset()

    def _reset(self) -> None:
        # Per index: row buffer number (-1: not batched), row in it, owner, version.
        self._group: list[int] = []
        self._row: list[int] = []
        self._owner: list[weakref.ref[Any] | None] = []
        self._version: list[int] = []
        self._seen: dict[Any, int] = {}
        self._done: dict[int, dict[str, float]] = {}
        self._extra: dict[int, dict[str, float]] = {}
        # Accelerator tensors: statistics vectors still on the device, read back at flush.
        self._pending: list[tuple[int, str, int, torch.Tensor]] = []

    def request(self, t: torch.Tensor) -> int:
        """The index of ``t``'s statistics as it is now (a tensor seen before keeps its index)."""
        try:
            version = t._version
        except RuntimeError:  # inference tensors have no version counter: no dedup
            return self._compute(t, None, 0)
        owner, key = _identity(t)
        index = self._seen.get(key)
        if index is not None:
            ref = self._owner[index]
            if ref is not None and ref() is owner and self._version[index] == version:
                return index
        try:
            ref = weakref.ref(owner)
        except TypeError:  # a subclass without weak references: no dedup
            return self._compute(t, None, 0)
        index = self._compute(t, ref, version)
        self._seen[key] = index
        return index

    def flush(self) -> StepStats:
        """Reduce everything requested in this step; the collector is then ready for the next."""
        sums: list[list[float]] = []
        numel: list[int] = []
        try:
            with torch.no_grad():
                for rows in self._buffers:
                    sums.append(rows.flush(self._done) if rows.used else [])
                    numel.append(rows.numel)
                self._flush_pending()
            return StepStats(self._group, self._row, sums, numel, self._done, self._extra)
        finally:
            for rows in self._buffers:
                rows.used = 0
                rows.indices.clear()
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
            for index, kind, n, _ in items:
                size = VECTOR_SIZE[kind]
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
        n = t.numel()
        if (t.device.type != "cpu" or self.defer_cpu) and n > 0 and has_values(t):
            index = self._new_index(ref, version, -1, 0)
            self._add_extra(index, t)
            with torch.no_grad():
                try:
                    kind, vector = device_vector(t.detach())
                except (RuntimeError, TypeError, NotImplementedError):  # exotic dtype
                    self._done[index] = {"numel": n}
                    return index
            self._pending.append((index, kind, n, vector))
            return index
        target = _BATCHED_DTYPES.get(t.dtype)  # quantized and complex dtypes are not listed
        if target is not None and 0 < n <= SMALL_NUMEL and not t.is_meta and _plain(t):
            key = (t.shape, target, t.device)
            rows = self._rows.get(key)
            if rows is None:
                rows = _Rows(len(self._buffers), tuple(t.shape), target, t.device)
                self._rows[key] = rows
                self._buffers.append(rows)
            index = len(self._group)
            row = rows.add(t.detach() if t.requires_grad else t, index)  # no graph to the copy
            self._new_index(ref, version, rows.number, row)
        else:
            index = self._new_index(ref, version, -1, 0)
            with torch.no_grad():
                self._done[index] = tensor_stats(t)
        self._add_extra(index, t)
        return index

    def _add_extra(self, index: int, t: torch.Tensor) -> None:
        if self.extra:
            values = extra_stats(t, self.extra)
            if values:
                self._extra[index] = values
