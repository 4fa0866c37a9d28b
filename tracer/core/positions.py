"""Named positions in the hot path's plain lists and tuples (cheaper to build than objects).

Imported by tracer.core.step_state (which builds and reads them), tracer.core.wrapping (the
fast path) and tracer.core.probe (which must not import step_state: step_state imports it).
"""

from __future__ import annotations

#: A pending call is a list indexed by these positions. A single plain tensor is kept as its
#: shared metadata tuple plus its statistics index (IN_REF, OUT_REF), so that the common call
#: allocates no per-tensor tuple at all.
INFO, INPUTS, OUTPUTS, START, DURATION, GRADS, OP, IN_REF, OUT_REF = range(9)
CALL_SIZE = 9

#: A pending tensor is a tuple indexed by these positions: (slot, shape, dtype, device,
#: requires_grad, type name, statistics index or None).
SLOT, SHAPE, DTYPE, DEVICE, REQUIRES_GRAD, TYPE_NAME, STATS_REF = range(7)
TENSOR_SIZE = 7
