"""The run store: runs and their traced records in SQLite or PostgreSQL (never imports torch).

``open_store(path_or_url)`` returns a :class:`Store`; ``store.writer(run_id)`` is the sink a
trace records into; every read returns the frozen records of :mod:`tracer.records`.
"""

from __future__ import annotations

from tracer.store.errors import (
    DamagedError,
    LimitError,
    ReadOnlyError,
    RunNotFound,
    SchemaError,
    ServerTimeout,
    StoreError,
)
from tracer.store.store import Store, open_store
from tracer.store.writer import RunWriter

__all__ = [
    "DamagedError",
    "LimitError",
    "ReadOnlyError",
    "RunNotFound",
    "RunWriter",
    "SchemaError",
    "ServerTimeout",
    "Store",
    "StoreError",
    "open_store",
]
