"""The one layout of a float statistics vector, shared by every statistics path (torch-free).

Every path that reduces a float tensor (the compiled kernel in ``_speedups.c``, its threaded
form in ``_probe.cpp``, :func:`tracer.core.stats.kernel_vector`, the torch reductions used
without the kernel, the collector's row buffers and the accelerator vectors) produces a
vector of ``SIZE`` numbers indexed by :class:`Stat`. ``stats_layout.h`` names the same indices
for C and C++ (``TRACER_STAT_<NAME>``); the compiled modules export their order as ``LAYOUT``,
and the tests check that all three agree.

Every sum, norm and extreme is over the finite values; ``SPREAD`` is
``sqrt(sum((x - mean)^2))`` over them. ``MIN`` and ``MAX`` are read only when ``FINITE`` is
not 0 (the compiled kernel leaves NaN there, the accelerator path ±Inf: making them agree would
cost a device kernel per tensor).
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
