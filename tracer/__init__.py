"""layer-tracer: record what flows through a PyTorch network, layer by layer, across steps.

Public names are loaded lazily so that ``import tracer.tui`` or ``import tracer.store`` never
imports torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "trace": "tracer.api",
    "summary": "tracer.summary_table",
    "Trace": "tracer.core.trace",
    "Sink": "tracer.sink",
    "MemorySink": "tracer.sink",
    "register_stat": "tracer.core.stats",
    "TensorRecord": "tracer.records",
    "CallRecord": "tracer.records",
    "ModuleRecord": "tracer.records",
    "ParamRecord": "tracer.records",
    "MetricRecord": "tracer.records",
    "RunInfo": "tracer.records",
    "open_store": "tracer.store",
    "hookimpl": "tracer.plugins.markers",
}

__all__ = [
    "CallRecord",
    "MemorySink",
    "MetricRecord",
    "ModuleRecord",
    "ParamRecord",
    "RunInfo",
    "Sink",
    "TensorRecord",
    "Trace",
    "__version__",
    "hookimpl",
    "open_store",
    "register_stat",
    "summary",
    "trace",
]

if TYPE_CHECKING:
    from tracer.api import trace
    from tracer.core.stats import register_stat
    from tracer.core.trace import Trace
    from tracer.plugins.markers import hookimpl
    from tracer.records import (
        CallRecord,
        MetricRecord,
        ModuleRecord,
        ParamRecord,
        RunInfo,
        TensorRecord,
    )
    from tracer.sink import MemorySink, Sink
    from tracer.store import open_store
    from tracer.summary_table import summary


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracer' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
