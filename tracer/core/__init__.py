"""The tracing core (torch only): what a traced forward records, and how.

- ``trace``: the ``Trace`` session (steps, metrics, the sink it hands records to)
- ``wrapping``: each module's ``forward`` wrapped on the instance; gradient hooks
- ``step_state``: the mutable state of one traced step, and the records built from it
- ``collector``, ``stats``: per-step statistics (the compiled kernel ``_speedups.c`` beside them)
- ``probe``: a tensor's metadata for the hooks' fast path (the compiled ``_probe.cpp`` beside it)
- ``op_layer``: functional reshapes (``view``, ``[:, -1]``...) recorded as ``kind="op"`` calls
- ``walk``: (slot, tensor) pairs of nested inputs and outputs
- ``module_records``: parameter counts per module, tied parameters counted once
- ``notes``: facts a run states about how it was traced
"""
