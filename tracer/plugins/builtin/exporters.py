"""Built-in exporters: ``json`` (the store's portable run file) and ``csv`` (one row per tensor)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tracer.plugins.markers import hookimpl
from tracer.plugins.pipeline import Exporter
from tracer.records import BUILTIN_STATS, format_shape

if TYPE_CHECKING:
    from tracer.store import Store

CSV_COLUMNS = (
    "step",
    "seq",
    "module",
    "type",
    "kind",
    "op",
    "call_index",
    "role",
    "slot",
    "shape",
    "dtype",
    "device",
    *BUILTIN_STATS,
)


def export_json(store: Store, run_id: int, path: Path) -> None:
    """The whole run (config, modules, records, metrics) as the store's JSON run file."""
    store.export_run(run_id, path)


def export_csv(store: Store, run_id: int, path: Path) -> None:
    """Every tensor record of every traced step, one CSV row each (the file appears complete)."""
    from tracer.store.portable import replaced_on_success

    with replaced_on_success(Path(path)) as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for step in store.steps(run_id):
            for call in store.flow(run_id, step):
                head = [step, call.seq, call.module, call.type, call.kind, call.op or ""]
                for t in call.tensors:
                    stats = [t.stats.get(name, "") for name in BUILTIN_STATS]
                    shape = format_shape(t.shape) if t.is_tensor else ""
                    writer.writerow(
                        [*head, call.call_index, t.role, t.slot, shape, t.dtype, t.device, *stats]
                    )


@hookimpl
def register_exporters(register: Callable[[Exporter], None]) -> None:
    """Contribute the json and csv exporters."""
    register(
        Exporter("json", "the run as a portable JSON file (re-importable)", export_json, ".json")
    )
    register(Exporter("csv", "one row per recorded tensor, all traced steps", export_csv, ".csv"))
