"""Moving a run between databases and machines: a JSON-lines file, strict JSON, NaN-safe.

Line 1 is a header ``{"format": "layer-tracer-run", "version": 1}``; then one ``run`` line (its
provenance), one ``modules`` line, one ``step`` line per traced step (its calls with their
tensors) and one ``metrics`` line per logged step. Non-finite floats are written as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` in statistics and metrics (and read back as
floats), so any JSON reader can load the file; a non-finite value inside a config comes back as
that string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from tracer.records import (
    CallRecord,
    ModuleRecord,
    ParamRecord,
    RunInfo,
    TensorRecord,
    frozen_mapping,
)
from tracer.store.errors import StoreError
from tracer.store.writer import RUNS, insert_metrics, insert_modules, insert_step, run_values

if TYPE_CHECKING:
    from tracer.store.store import Store

FORMAT, VERSION = "layer-tracer-run", 1
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_RUN_FIELDS = (
    "name",
    "pipeline",
    "status",
    "config",
    "error",
    "seed",
    "python_version",
    "torch_version",
    "tracer_version",
    "device",
    "host",
    "pid",
    "git_commit",
    "command",
    "started_at",
    "finished_at",
    "updated_at",
    "rank",
    "world_size",
    "group_id",
    "tags",
    "notes",
)


def _safe(value: Any) -> Any:
    """Replace non-finite floats (anywhere inside lists and dicts) with their string names."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def _float(value: Any) -> float:
    return _SPECIAL[value] if isinstance(value, str) else float(value)


def _plain(record: Any) -> dict[str, Any]:
    # dataclasses.asdict would deep-copy (and fail on) the read-only stats mappings
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _call_dict(call: CallRecord) -> dict[str, Any]:
    data = _plain(call)
    for key in ("inputs", "outputs", "grads"):
        data[key] = [{**_plain(t), "stats": dict(t.stats)} for t in data[key]]
    return data


def _module_dict(module: ModuleRecord) -> dict[str, Any]:
    return {**_plain(module), "parameters": [_plain(p) for p in module.parameters]}


def _lines(store: Store, run_id: int) -> Iterator[dict[str, Any]]:
    run = store.get_run(run_id)
    yield {"format": FORMAT, "version": VERSION}
    fields = {k: getattr(run, k) for k in _RUN_FIELDS}
    fields.update(config=dict(run.config), tags=dict(run.tags), notes=list(run.notes))
    yield {"type": "run", **fields}
    yield {"type": "modules", "modules": [_module_dict(m) for m in store.module_tree(run_id)]}
    for step in store.steps(run_id):
        calls = [_call_dict(c) for c in store.flow(run_id, step)]
        yield {"type": "step", "step": step, "calls": calls}
    for step, group in groupby(store.metrics(run_id), key=lambda m: m.step):
        yield {"type": "metrics", "step": step, "values": {m.name: m.value for m in group}}


def export_run(store: Store, run_id: int, path: Path) -> None:
    """Write run ``run_id`` of ``store`` to ``path`` as JSON lines."""
    try:
        with path.open("w", encoding="utf-8") as fh:
            for line in _lines(store, run_id):
                fh.write(json.dumps(_safe(line), allow_nan=False) + "\n")
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None


def _tensor(data: dict[str, Any]) -> TensorRecord:
    stats = {k: _float(v) for k, v in data.pop("stats").items()}
    return TensorRecord(**{**data, "shape": tuple(data["shape"]), "stats": frozen_mapping(stats)})


def _call(data: dict[str, Any]) -> CallRecord:
    for key in ("inputs", "outputs", "grads"):
        data[key] = tuple(_tensor(t) for t in data[key])
    return CallRecord(**data)


def _module(data: dict[str, Any]) -> ModuleRecord:
    params = tuple(ParamRecord(**{**p, "shape": tuple(p["shape"])}) for p in data["parameters"])
    return ModuleRecord(**{**data, "parameters": params})


def _read(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for number, text in enumerate(fh, 1):
                try:
                    yield json.loads(text)
                except json.JSONDecodeError as exc:
                    raise StoreError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None


def import_run(store: Store, path: Path) -> RunInfo:
    """Read a file written by :func:`export_run` into ``store`` as a new run; return its RunInfo."""
    lines = _read(path)
    header = next(lines, None)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StoreError(f"{path} is not a layer-tracer run export")
    if header.get("version") != VERSION:
        raise StoreError(f"{path} has export version {header.get('version')}, expected {VERSION}")
    run = next(lines, {})
    if run.get("type") != "run":
        raise StoreError(f"{path}: the run line is missing")
    fields = {k: run.get(k) for k in _RUN_FIELDS}
    values = run_values(**fields, last_metrics={})
    run_id = store.insert_run({**values, "step_count": 0})
    try:
        _import_body(store, run_id, lines, run)
    except (KeyError, TypeError, ValueError) as exc:
        store.delete_run(run_id)  # never leave half a run behind
        raise StoreError(f"{path}: malformed export ({type(exc).__name__}: {exc})") from None
    except BaseException:
        store.delete_run(run_id)
        raise
    return store.get_run(run_id)


def _import_body(
    store: Store, run_id: int, lines: Iterator[dict[str, Any]], run: dict[str, Any]
) -> None:
    steps = 0
    for line in lines:
        with store.writing() as conn:
            if line["type"] == "modules":
                insert_modules(conn, run_id, [_module(m) for m in line["modules"]])
            elif line["type"] == "step":
                insert_step(conn, run_id, line["step"], [_call(c) for c in line["calls"]])
                steps += 1
            elif line["type"] == "metrics":
                values = {k: _float(v) for k, v in line["values"].items()}
                insert_metrics(conn, run_id, line["step"], values)
    with store.writing() as conn:
        # restore the exported timestamps that the inserts above bumped
        conn.execute(
            update(RUNS)
            .where(RUNS.c.id == run_id)
            .values(step_count=steps, updated_at=run["updated_at"])
        )
