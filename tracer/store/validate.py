"""Reading a run export line by line, every field checked against the schema before it is used.

Each line becomes typed records (or an :class:`ImportRefused` naming the file, the line and the
field: ``run.jsonl:7: field calls.3.inputs.0.shape.1: expected a non-negative integer, got
-2``). The limits come from the column types in :mod:`tracer.store.schema` through
:data:`tracer.store.limits.LIMITS` (``String(200)``: 200 characters; ``Integer``: a 32-bit
integer; ``BigInteger``: a 64-bit one), so a file that passes fits every backend. Checking is
linear in the size of the file: a line is read at most :data:`MAX_LINE_CHARS` characters at a
time, and a value is measured before it is looked into.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, get_args

from tracer.records import (
    CallRecord,
    ModuleRecord,
    ParamRecord,
    RunStatus,
    TensorRecord,
    frozen_mapping,
    literal,
)
from tracer.store.errors import LimitError, StoreError
from tracer.store.limits import INT4, INT8, LIMITS, check_json_column, check_text

FORMAT, VERSION = "layer-tracer-run", 1
#: The longest line read (characters); a real step line of a big model is a few megabytes.
MAX_LINE_CHARS = 256 * 1024 * 1024
#: How deep lists and objects may nest inside a run's config.
MAX_CONFIG_DEPTH = 32
#: The most dimensions a recorded shape may have.
MAX_SHAPE_RANK = 64
#: The most notes a run may carry, and the longest note (characters).
MAX_NOTES, MAX_NOTE_CHARS = 10_000, 100_000
#: The most statistics one tensor record may carry.
MAX_STATS = 1_000
#: The latest timestamp accepted: the last second of the year 9999 (POSIX seconds).
MAX_TIMESTAMP = 253_402_300_799.0
#: How many characters of a value or a key an error message shows.
SHOWN = 40

STATUSES: tuple[str, ...] = get_args(RunStatus)
KINDS = ("module", "op")
SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: The roles a tensor record may have in each list of a call.
ROLES = {"inputs": ("input",), "outputs": ("output",), "grads": ("grad", "param_grad")}

RUN_FIELDS = (
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
_RUN_REQUIRED = ("name", "status", "started_at", "updated_at")
_CALL_KEYS = (
    "step",
    "seq",
    "module",
    "type",
    "call_index",
    "kind",
    "op",
    "inputs",
    "outputs",
    "grads",
    "duration_s",
    "depth",
)
_TENSOR_KEYS = ("slot", "shape", "dtype", "device", "requires_grad", "role", "type_name", "stats")
_MODULE_KEYS = (
    "path",
    "type",
    "parent",
    "depth",
    "params_own",
    "params_total",
    "trainable_own",
    "trainable_total",
    "extra_repr",
    "parameters",
)
_PARAM_KEYS = ("name", "shape", "dtype", "numel", "requires_grad", "shared_with")
_NON_NEGATIVE_INT4 = (0, INT4[1])
_NON_NEGATIVE_INT8 = (0, INT8[1])


class ImportRefused(StoreError):
    """An export file that cannot be imported; the message names the file, line and field."""


def shown(value: object) -> str:
    """A short, quoted rendering of a value for an error message (never the whole of it)."""
    if isinstance(value, str):
        return repr(value if len(value) <= SHOWN else value[:SHOWN] + "…")
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 128 else "…"
        return text if len(text) <= SHOWN else text[:SHOWN] + "…"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    return type(value).__name__


def _key(value: str) -> str:
    """A key as one part of a dotted path: control characters written out, cut when long."""
    return literal(value, SHOWN)


@dataclass
class RunLine:
    """The checked ``run`` line: the ``runs`` row's values before encoding."""

    values: dict[str, Any]

    @property
    def origin(self) -> tuple[Any, ...]:
        """What identifies a recorded run: host, pid, start time, name and rank."""
        v = self.values
        return (v["host"], v["pid"], v["started_at"], v["name"], v["rank"])


@dataclass
class StepLine:
    """One checked ``step`` line."""

    step: int
    calls: list[CallRecord]


@dataclass
class MetricsLine:
    """One checked ``metrics`` line."""

    step: int
    values: dict[str, float]


@dataclass
class ModulesLine:
    """The checked ``modules`` line."""

    modules: list[ModuleRecord]


Line = RunLine | StepLine | MetricsLine | ModulesLine


@dataclass
class Summary:
    """What a whole checked file holds."""

    run: RunLine
    steps: int = 0
    metric_lines: int = 0
    lines: int = 0
    modules: int = 0
    seen_steps: set[int] = field(default_factory=set)


class _Checker:
    """The checks of one line; each failure names the file, the line and the field."""

    __slots__ = ("number", "where")

    def __init__(self, where: str, number: int) -> None:
        self.where = where
        self.number = number

    def fail(self, path: str, what: str) -> NoReturn:
        """Refuse the file at this line and field."""
        raise ImportRefused(f"{self.where}:{self.number}: field {path}: {what}")

    def line_error(self, what: str) -> NoReturn:
        """Refuse the file at this line (not one field)."""
        raise ImportRefused(f"{self.where}:{self.number}: {what}")

    def obj(
        self, value: Any, path: str, keys: Sequence[str], required: Sequence[str]
    ) -> dict[str, Any]:
        """An object with only ``keys``, holding every key in ``required``."""
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {shown(value)}")
        if len(value) > len(keys) or not set(value).issubset(keys):
            unknown = next(k for k in value if k not in keys)
            self.fail(_join(path, unknown), "unknown key")
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "missing")
        return value

    def integer(self, value: Any, path: str, bounds: tuple[int, int]) -> int:
        """An integer (not a bool) within ``bounds``."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {shown(value)}")
        low, high = bounds
        if not low <= value <= high:
            self.fail(path, f"{shown(value)} is outside {low:,} to {high:,}")
        return value

    def column_int(self, value: Any, path: str, table: str, column: str, low: int = 0) -> int:
        """An integer that fits the column's type, and is at least ``low``."""
        bounds = LIMITS[table][column].int_range
        assert bounds is not None, f"{table}.{column} is not an integer column"
        return self.integer(value, path, (max(low, bounds[0]), bounds[1]))

    def text(
        self, value: Any, path: str, table: str, column: str, *, nullable: bool = False
    ) -> str | None:
        """A string that fits the column (length, no NUL, valid Unicode); None if nullable."""
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {shown(value)}")
        limit = LIMITS[table][column]
        self._fits(value, path, limit.label, limit.max_chars)
        return value

    def _fits(self, value: str, path: str, label: str, max_chars: int | None) -> None:
        try:
            check_text(label, value, max_chars)
        except LimitError as exc:
            self.fail(path, str(exc))

    def plain_text(self, value: Any, path: str, max_chars: int) -> str:
        """A string of at most ``max_chars`` characters, with no NUL and valid Unicode."""
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {shown(value)}")
        self._fits(value, path, "text", max_chars)
        return value

    def flag(self, value: Any, path: str) -> bool:
        """A JSON boolean."""
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {shown(value)}")
        return value

    def choice(self, value: Any, path: str, known: Sequence[str]) -> str:
        """One of the known strings."""
        if not isinstance(value, str) or value not in known:
            self.fail(path, f"{shown(value)} is not one of {', '.join(known)}")
        return value

    def finite(self, value: Any, path: str, *, nullable: bool = False) -> float | None:
        """A finite number (an integer or a float, not a bool)."""
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, got {shown(value)}")
        number = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
        if not math.isfinite(number):
            self.fail(path, f"{shown(value)} is not a finite number")
        return number

    def statistic(self, value: Any, path: str) -> float:
        """A number, or one of the strings "NaN", "Infinity", "-Infinity"."""
        if isinstance(value, str):
            if value not in SPECIAL:
                self.fail(path, f'{shown(value)} is not a number, "NaN", "Infinity" or "-Infinity"')
            return SPECIAL[value]
        number = self.finite(value, path)
        assert number is not None
        return number

    def timestamp(self, value: Any, path: str, *, nullable: bool = False) -> float | None:
        """POSIX seconds between 1970 and the end of the year 9999."""
        number = self.finite(value, path, nullable=nullable)
        if number is not None and not 0.0 <= number <= MAX_TIMESTAMP:
            self.fail(path, f"{shown(value)} is not a time between 1970 and 9999 (POSIX seconds)")
        return number

    def shape(self, value: Any, path: str) -> tuple[int, ...]:
        """A list of at most :data:`MAX_SHAPE_RANK` non-negative 64-bit integers."""
        if not isinstance(value, list):
            self.fail(path, f"expected a list of sizes, got {shown(value)}")
        if len(value) > MAX_SHAPE_RANK:
            self.fail(path, f"{len(value)} dimensions; the limit is {MAX_SHAPE_RANK}")
        for i, size in enumerate(value):
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= INT8[1]:
                self.fail(f"{path}.{i}", f"expected a non-negative integer, got {shown(size)}")
        return tuple(value)

    def json_value(self, value: Any, path: str, depth: int) -> None:
        """A JSON value nested at most :data:`MAX_CONFIG_DEPTH` deep, with finite numbers."""
        if depth > MAX_CONFIG_DEPTH:
            self.fail(path, f"nested more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"{shown(value)} is not a finite number")
        if isinstance(value, str):
            self._fits(value, path, "text", None)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._fits(key, _join(path, key), "key", None)
                self.json_value(item, _join(path, key), depth + 1)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.json_value(item, f"{path}.{i}", depth + 1)

    def json_column(self, value: Any, path: str, column: str, *, strings: bool) -> dict[str, Any]:
        """The config or tags object: nesting, item and total sizes as the column allows."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {shown(value)}")
        if strings:
            for key, item in value.items():
                if not isinstance(item, str):
                    self.fail(_join(path, key), f"expected a string, got {shown(item)}")
        self.json_value(value, path, 1)
        try:
            check_json_column("runs", column, value)
        except LimitError as exc:
            self.fail(path, str(exc))
        return value


def _join(path: str, key: str) -> str:
    return f"{path}.{_key(key)}" if path else _key(key)


# -- the lines -----------------------------------------------------------------------------------


def check_run(c: _Checker, data: dict[str, Any]) -> RunLine:
    """The ``run`` line: provenance that fits the ``runs`` table."""
    keys = ("type", *RUN_FIELDS)
    c.obj(data, "", keys, _RUN_REQUIRED)
    v: dict[str, Any] = {}
    for name in ("name",):
        v[name] = c.text(data[name], name, "runs", name)
    for name in (
        "pipeline",
        "python_version",
        "torch_version",
        "tracer_version",
        "device",
        "host",
        "git_commit",
        "group_id",
        "error",
        "command",
    ):
        v[name] = c.text(data.get(name), name, "runs", name, nullable=True)
    v["status"] = c.choice(data["status"], "status", STATUSES)
    seed = data.get("seed")
    v["seed"] = None if seed is None else c.column_int(seed, "seed", "runs", "seed", INT8[0])
    pid = data.get("pid")
    v["pid"] = None if pid is None else c.column_int(pid, "pid", "runs", "pid")
    v["started_at"] = c.timestamp(data["started_at"], "started_at")
    v["updated_at"] = c.timestamp(data["updated_at"], "updated_at")
    v["finished_at"] = c.timestamp(data.get("finished_at"), "finished_at", nullable=True)
    v["world_size"] = c.column_int(data.get("world_size", 1), "world_size", "runs", "world_size", 1)
    v["rank"] = c.column_int(data.get("rank", 0), "rank", "runs", "rank")
    if v["rank"] >= v["world_size"]:
        c.fail("rank", f"rank {v['rank']} is not below world_size {v['world_size']}")
    v["config"] = c.json_column(data.get("config"), "config", "config", strings=False)
    v["tags"] = c.json_column(data.get("tags"), "tags", "tags", strings=True)
    notes = data.get("notes") or []
    if not isinstance(notes, list):
        c.fail("notes", f"expected a list of strings, got {shown(notes)}")
    if len(notes) > MAX_NOTES:
        c.fail("notes", f"{len(notes):,} notes; the limit is {MAX_NOTES:,}")
    v["notes"] = [c.plain_text(n, f"notes.{i}", MAX_NOTE_CHARS) for i, n in enumerate(notes)]
    return RunLine(v)


def check_modules(c: _Checker, data: dict[str, Any]) -> ModulesLine:
    """The ``modules`` line: the model's modules in ``named_modules()`` order."""
    c.obj(data, "", ("type", "modules"), ("modules",))
    modules = data["modules"]
    if not isinstance(modules, list):
        c.fail("modules", f"expected a list, got {shown(modules)}")
    records: list[ModuleRecord] = []
    paths: set[str] = set()
    for i, item in enumerate(modules):
        record = _module(c, item, f"modules.{i}")
        if record.path in paths:
            c.fail(f"modules.{i}.path", f"module {shown(record.path)} is listed twice")
        paths.add(record.path)
        records.append(record)
    return ModulesLine(records)


def _module(c: _Checker, data: Any, path: str) -> ModuleRecord:
    c.obj(data, path, _MODULE_KEYS, ("path", "type", "depth"))
    counts = {
        name: c.column_int(data.get(name, 0), f"{path}.{name}", "modules", name)
        for name in ("params_own", "params_total", "trainable_own", "trainable_total")
    }
    params = data.get("parameters", [])
    if not isinstance(params, list):
        c.fail(f"{path}.parameters", f"expected a list, got {shown(params)}")
    return ModuleRecord(
        path=c.text(data["path"], f"{path}.path", "modules", "path") or "",
        type=c.text(data["type"], f"{path}.type", "modules", "type") or "",
        parent=c.text(data.get("parent"), f"{path}.parent", "modules", "parent", nullable=True),
        depth=c.column_int(data["depth"], f"{path}.depth", "modules", "depth"),
        extra_repr=c.text(data.get("extra_repr", ""), f"{path}.extra_repr", "modules", "extra_repr")
        or "",
        parameters=tuple(_param(c, p, f"{path}.parameters.{i}") for i, p in enumerate(params)),
        **counts,
    )


def _param(c: _Checker, data: Any, path: str) -> ParamRecord:
    c.obj(data, path, _PARAM_KEYS, ("name", "shape", "dtype", "numel", "requires_grad"))
    return ParamRecord(
        name=c.text(data["name"], f"{path}.name", "modules", "path") or "",
        shape=c.shape(data["shape"], f"{path}.shape"),
        dtype=c.text(data["dtype"], f"{path}.dtype", "tensors", "dtype") or "",
        numel=c.integer(data["numel"], f"{path}.numel", _NON_NEGATIVE_INT8),
        requires_grad=c.flag(data["requires_grad"], f"{path}.requires_grad"),
        shared_with=c.text(
            data.get("shared_with"), f"{path}.shared_with", "modules", "path", nullable=True
        ),
    )


def check_step(c: _Checker, data: dict[str, Any]) -> StepLine:
    """A ``step`` line: one traced step's calls, each with its tensor records."""
    c.obj(data, "", ("type", "step", "calls"), ("step", "calls"))
    step = c.column_int(data["step"], "step", "calls", "step")
    calls = data["calls"]
    if not isinstance(calls, list):
        c.fail("calls", f"expected a list of calls, got {shown(calls)}")
    if not calls:
        c.fail("calls", "a traced step holds at least one call")
    records: list[CallRecord] = []
    seqs: set[int] = set()
    for i, item in enumerate(calls):
        record = _call(c, item, f"calls.{i}", step)
        if record.seq in seqs:
            c.fail(f"calls.{i}.seq", f"seq {record.seq} is given twice in step {step}")
        seqs.add(record.seq)
        records.append(record)
    return StepLine(step, records)


def _call(c: _Checker, data: Any, path: str, step: int) -> CallRecord:
    c.obj(data, path, _CALL_KEYS, ("step", "seq", "module", "type"))
    if data["step"] != step or isinstance(data["step"], bool):
        c.fail(f"{path}.step", f"{shown(data['step'])} is not the line's step {step}")
    tensors = {}
    for key, roles in ROLES.items():
        items = data.get(key, [])
        if not isinstance(items, list):
            c.fail(f"{path}.{key}", f"expected a list of tensor records, got {shown(items)}")
        tensors[key] = tuple(_tensor(c, t, f"{path}.{key}.{i}", roles) for i, t in enumerate(items))
    return CallRecord(
        step=step,
        seq=c.column_int(data["seq"], f"{path}.seq", "calls", "seq"),
        module=c.text(data["module"], f"{path}.module", "calls", "module") or "",
        type=c.text(data["type"], f"{path}.type", "calls", "type") or "",
        call_index=c.column_int(
            data.get("call_index", 0), f"{path}.call_index", "calls", "call_index"
        ),
        kind=c.choice(data.get("kind", "module"), f"{path}.kind", KINDS),  # type: ignore[arg-type]
        op=c.text(data.get("op"), f"{path}.op", "calls", "op", nullable=True),
        duration_s=c.finite(data.get("duration_s"), f"{path}.duration_s", nullable=True),
        depth=c.column_int(data.get("depth", 0), f"{path}.depth", "calls", "depth"),
        **tensors,
    )


def _tensor(c: _Checker, data: Any, path: str, roles: Sequence[str]) -> TensorRecord:
    c.obj(data, path, _TENSOR_KEYS, ("slot", "shape", "dtype", "device"))
    stats = data.get("stats", {})
    if not isinstance(stats, dict):
        c.fail(f"{path}.stats", f"expected an object, got {shown(stats)}")
    if len(stats) > MAX_STATS:
        c.fail(f"{path}.stats", f"{len(stats):,} statistics; the limit is {MAX_STATS:,}")
    values = {}
    for name, value in stats.items():
        where = _join(f"{path}.stats", name)
        c.text(name, where, "extra_stats", "name")
        values[name] = c.statistic(value, where)
    type_name = data.get("type_name", "Tensor")
    return TensorRecord(
        slot=c.text(data["slot"], f"{path}.slot", "tensors", "slot") or "",
        shape=c.shape(data["shape"], f"{path}.shape"),
        dtype=c.text(data["dtype"], f"{path}.dtype", "tensors", "dtype") or "",
        device=c.text(data["device"], f"{path}.device", "tensors", "device") or "",
        requires_grad=c.flag(data.get("requires_grad", False), f"{path}.requires_grad"),
        role=c.choice(data.get("role", roles[0]), f"{path}.role", roles),  # type: ignore[arg-type]
        type_name=c.text(type_name, f"{path}.type_name", "tensors", "type_name") or "Tensor",
        stats=frozen_mapping(values),
    )


def check_metrics(c: _Checker, data: dict[str, Any]) -> MetricsLine:
    """A ``metrics`` line: the scalars logged at one step."""
    c.obj(data, "", ("type", "step", "values"), ("step", "values"))
    step = c.column_int(data["step"], "step", "metrics", "step")
    values = data["values"]
    if not isinstance(values, dict):
        c.fail("values", f"expected an object of metric values, got {shown(values)}")
    checked = {}
    for name, value in values.items():
        where = _join("values", name)
        c.text(name, where, "metrics", "name")
        checked[name] = c.statistic(value, where)
    return MetricsLine(step, checked)


_BODY: dict[str, Callable[[_Checker, dict[str, Any]], Line]] = {
    "step": check_step,
    "metrics": check_metrics,
    "modules": check_modules,
}


# -- the file ------------------------------------------------------------------------------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


class _DuplicateKey(ValueError):
    """A JSON object gives the same key twice."""


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f'{name} is not standard JSON (write it as the string "{name}")')


def _parse(c: _Checker, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except _DuplicateKey as exc:
        c.line_error(f"the key {shown(exc.args[0])} is given twice in one object")
    except json.JSONDecodeError as exc:
        c.line_error(f"not a JSON line ({exc.msg} at column {exc.colno})")
    except RecursionError:
        c.line_error("not a JSON line (nested too deeply)")
    except ValueError as exc:  # a NaN constant, a number with too many digits
        if "digits" in str(exc):
            c.line_error("not a JSON line (a number with more than 4,300 digits)")
        c.line_error(f"not a JSON line ({exc})")


def _raw_lines(path: Path, where: str) -> Iterator[tuple[int, str]]:
    """(number, text) of each non-blank line; a UTF-8 byte order mark is skipped."""
    if path.is_dir():
        raise ImportRefused(f"cannot read {where}: it is a directory")
    try:
        with path.open(encoding="utf-8-sig", newline="\n") as fh:
            number = 0
            while True:
                number += 1
                try:
                    text = fh.readline(MAX_LINE_CHARS + 1)
                except UnicodeDecodeError as exc:
                    raise ImportRefused(
                        f"{where}:{number}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
                    ) from None
                if not text:
                    return
                if len(text) > MAX_LINE_CHARS:
                    raise ImportRefused(
                        f"{where}:{number}: the line is longer than {MAX_LINE_CHARS:,} characters"
                    )
                if text.strip():
                    yield number, text
    except FileNotFoundError:
        raise ImportRefused(f"cannot read {where}: no such file") from None
    except OSError as exc:
        raise ImportRefused(f"cannot read {where}: {exc.strerror or exc}") from None


def read_export(path: Path) -> Iterator[Line]:
    """Every line of an export, checked and typed: the run line first, then the body."""
    where = str(path)
    lines = _raw_lines(path, where)
    first = next(lines, None)
    if first is None:
        raise ImportRefused(f"{where}: the file is empty, not a layer-tracer run export")
    c = _Checker(where, first[0])
    header = _parse(c, first[1])
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ImportRefused(f"{where}: not a layer-tracer run export (no header line)")
    c.obj(header, "", ("format", "version"), ("version",))
    if header["version"] != VERSION or isinstance(header["version"], bool):
        c.fail("version", f"export version {shown(header['version'])}, expected {VERSION}")
    second = next(lines, None)
    if second is None:
        raise ImportRefused(f"{where}: the run line is missing")
    c = _Checker(where, second[0])
    data = _parse(c, second[1])
    if not isinstance(data, dict) or data.get("type") != "run":
        c.line_error("expected the run line here")
    yield check_run(c, data)
    yield from _body(where, lines)


def _body(where: str, lines: Iterator[tuple[int, str]]) -> Iterator[Line]:
    steps: dict[int, int] = {}
    metrics: dict[int, int] = {}
    modules_at = 0
    for number, text in lines:
        c = _Checker(where, number)
        data = _parse(c, text)
        kind = data.get("type") if isinstance(data, dict) else None
        check = _BODY.get(kind) if isinstance(kind, str) else None
        if check is None:
            if not isinstance(data, dict):
                c.line_error(f"expected an object, got {shown(data)}")
            c.fail("type", f"{shown(kind)} is not one of step, metrics, modules")
        item = check(c, data)
        if isinstance(item, ModulesLine):
            if modules_at:
                c.line_error(f"a second modules line (the first is line {modules_at})")
            modules_at = number
        elif isinstance(item, StepLine | MetricsLine):
            seen = steps if isinstance(item, StepLine) else metrics
            if item.step in seen:
                c.fail("step", f"step {item.step} is already given on line {seen[item.step]}")
            seen[item.step] = number
        yield item


def check_export(path: Path) -> Summary:
    """Read and check a whole export without keeping its records; raise ImportRefused."""
    lines = read_export(path)
    run = next(lines)
    assert isinstance(run, RunLine)
    summary = Summary(run)
    for item in lines:
        summary.lines += 1
        if isinstance(item, StepLine):
            summary.steps += 1
        elif isinstance(item, MetricsLine):
            summary.metric_lines += 1
        elif isinstance(item, ModulesLine):
            summary.modules = len(item.modules)
    return summary
