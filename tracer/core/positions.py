"""Named positions in the hot path's plain lists and tuples (cheaper to build than objects).

Imported by tracer.core.step_state (which builds and reads them), tracer.core.wrapping (the
fast path) and tracer.core.probe (which must not import step_state: step_state imports it).
Each is a ``Final`` literal so that mypy knows the type of the tuple field it selects.
"""

from __future__ import annotations

from typing import Final

# A pending call is a list indexed by these positions. A single plain tensor is kept as its
# shared metadata tuple plus its statistics index (IN_REF, OUT_REF), so that the common call
# allocates no per-tensor tuple at all.
INFO: Final = 0  # (path, type name, depth)
INPUTS: Final = 1  # pending tensors: one tuple (a single plain tensor), a list, or ()
OUTPUTS: Final = 2
START: Final = 3  # perf_counter() when the forward started
DURATION: Final = 4  # seconds, or None
GRADS: Final = 5  # [(pending tensor, role)] or None
OP: Final = 6  # the op name of an op-layer call, None for a module call
IN_REF: Final = 7  # statistics index of a single plain input, or None
OUT_REF: Final = 8  # statistics index of a single plain output, or None
CALL_SIZE: Final = 9

# A pending tensor is a tuple indexed by these positions.
SLOT: Final = 0  # "0", "x", "out.logits", ...
SHAPE: Final = 1  # tuple or torch.Size
DTYPE: Final = 2  # torch.dtype, None for an opaque leaf
DEVICE: Final = 3  # torch.device, None for an opaque leaf
REQUIRES_GRAD: Final = 4
TYPE_NAME: Final = 5  # "Tensor", a subclass name, or an opaque leaf's type name
STATS_REF: Final = 6  # statistics index, or None
TENSOR_SIZE: Final = 7
