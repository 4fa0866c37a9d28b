"""The one layout of a float statistics vector, shared by every statistics path (torch-free).

Every path that reduces a float tensor (the compiled kernel in ``_speedups.c``, its threaded
form in ``_probe.cpp``, :func:`tracer.core.stats.kernel_vector`, the torch reductions used
without the kernel, the collector's row buffers and the accelerator vectors) produces a
vector of ``SIZE`` numbers indexed by :class:`Stat`. ``stats_layout.h`` names the same indices
for C and C++ (``TRACER_STAT_<NAME>``); the compiled modules export their order as ``LAYOUT``,
and the tests check that all three agree.

Every sum, norm, count and extreme is over the finite values; ``SPREAD`` is
``sqrt(sum((x - mean)^2))`` over them. ``MIN`` and ``MAX`` are read only when ``FINITE`` is
not 0 (the compiled kernel leaves NaN there, the accelerator path ±Inf: making them agree would
cost a device kernel per tensor).

``NEAR_ZERO`` and ``NEAR_ONE`` count the values pinned at the bounds of a bounded activation
(sigmoid, tanh, hardtanh, softmax): ``|x| <= NEAR_BAND`` and ``NEAR_ONE_LOW <= |x| <=
NEAR_ONE_HIGH``, both bounds included, decided on the value as stored (a float32 value against
the float32 bound on the right side of the real one: float32(0.01) is just below 0.01,
float32(0.99) just above 0.99, float32(1.01) just below 1.01, so comparing in float32 gives
the exact answer; float16/bfloat16 values are exact in float32).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class Stat(IntEnum):
    """Index of each number in a float statistics vector."""

    NUMEL = 0  # elements, NaN and Inf included
    FINITE = 1  # finite elements (the count the other statistics are taken over)
    NAN = 2  # NaN elements (Inf = NUMEL - FINITE - NAN)
    SUM = 3
    SPREAD = 4  # sqrt of the sum of squared deviations from the mean
    L2 = 5
    L1 = 6
    NONZERO = 7
    MIN = 8  # MIN and MAX mean nothing when FINITE is 0 (NaN, or ±Inf on a device)
    MAX = 9
    NEAR_ZERO = 10  # finite values with |x| <= NEAR_BAND
    NEAR_ONE = 11  # finite values with NEAR_ONE_LOW <= |x| <= NEAR_ONE_HIGH


#: Numbers per vector.
SIZE: Final = len(Stat)

# Plain ints for the hot paths (reading an enum member costs more than a module constant).
NUMEL: Final = int(Stat.NUMEL)
FINITE: Final = int(Stat.FINITE)
NAN: Final = int(Stat.NAN)
SUM: Final = int(Stat.SUM)
SPREAD: Final = int(Stat.SPREAD)
L2: Final = int(Stat.L2)
L1: Final = int(Stat.L1)
NONZERO: Final = int(Stat.NONZERO)
MIN: Final = int(Stat.MIN)
MAX: Final = int(Stat.MAX)
NEAR_ZERO: Final = int(Stat.NEAR_ZERO)
NEAR_ONE: Final = int(Stat.NEAR_ONE)

#: Half-width of the bands that ``NEAR_ZERO`` and ``NEAR_ONE`` count, fixed when a run is
#: recorded (a stored ``near_zero_frac`` means this band, so changing it changes what old
#: and new runs compare): 1% of a sigmoid's or softmax's range.
NEAR_BAND: Final = 0.01
#: The near-one band, ``1 - NEAR_BAND`` to ``1 + NEAR_BAND`` (both exactly these doubles).
NEAR_ONE_LOW: Final = 0.99
NEAR_ONE_HIGH: Final = 1.01

#: The names in index order, as the compiled modules' ``LAYOUT`` gives them.
LAYOUT: Final = tuple(stat.name.lower() for stat in Stat)


class IntStat(IntEnum):
    """Index of each number in an integer tensor's accelerator vector."""

    SUM = 0
    MIN = 1
    MAX = 2
    NONZERO = 3


#: Numbers per integer vector (a bool tensor's vector is its one count of true values).
INT_SIZE: Final = len(IntStat)


class Packed(IntEnum):
    """Where the compiled request packs an empty, integer or bool tensor's numbers into a
    vector's space (``stats_layout.h``: ``TRACER_PACKED_<NAME>``): ``KIND`` holds the integer
    pass's kind (``BOOL_KIND`` for a bool tensor) or ``EMPTY_KIND``, and an :class:`IntStat`
    vector starts at ``INTS``."""

    NUMEL = 0
    KIND = 1
    INTS = 2


#: The kinds a packed vector's ``KIND`` tells apart from the integer ones (``stats_layout.h``:
#: ``TRACER_PACKED_EMPTY``, ``TRACER_INT_BOOL``).
EMPTY_KIND: Final = -1
BOOL_KIND: Final = 5
