"""Typed pipeline configs: describe a config dataclass, parse ``--set key=value`` and TOML files.

A field may declare its allowed range in its metadata: ``{"help": ..., "min": 1, "max": 4096}``
(inclusive bounds, for int and float fields), and a float field ``"finite": False`` to accept
NaN and infinities. Without a declaration an int must fit a signed 64-bit integer (what the
store and torch can hold) and a float must be finite. Values are checked when a config is
built, before a run exists; ``none`` is always allowed for an optional field.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}
_SCALARS: tuple[type, ...] = (bool, int, float, str, Path)
#: What an int field accepts when it declares no range: a signed 64-bit integer.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_RANGE_KEYS = ("min", "max")


class ConfigError(ValueError):
    """A config key or value that does not fit the pipeline's config."""


@dataclass(frozen=True)
class ConfigField:
    """One config key: its name, Python type, default and help text."""

    name: str
    type: type
    optional: bool
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    finite: bool = True

    @property
    def type_name(self) -> str:
        """The expected type as a user reads it: ``int``, ``float or none``."""
        names: dict[type, str] = {Path: "path", str: "text"}
        base = names.get(self.type, self.type.__name__)
        return f"{base} or none" if self.optional else base

    @property
    def range_text(self) -> str:
        """The allowed values as a user reads them: ``1 to 4096``, ``at least 0``, or ``""``."""
        low, high = self.min, self.max
        if self.type is int:  # the 64-bit bounds go without saying unless nothing else is set
            low = None if low == INT64_MIN else low
            high = None if high == INT64_MAX else high
            if low is None and high is None:
                return ""
        if low is not None and high is not None:
            return f"{_num(low)} to {_num(high)}"
        if low is not None:
            return f"at least {_num(low)}"
        if high is not None:
            return f"at most {_num(high)}"
        return "finite" if self.type is float and self.finite else ""


def _num(value: float) -> str:
    """A bound as written: ``1``, ``0.5``, ``1e-06``."""
    return repr(value) if isinstance(value, float) else str(value)


def _resolve(hint: Any) -> tuple[type, bool]:
    """Split a type hint into (scalar type, optional?); raise for types we cannot parse."""
    optional = False
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise ConfigError(f"unsupported config type {hint!r}: use one scalar type")
        hint = args[0]
    if hint not in _SCALARS:
        raise ConfigError(f"unsupported config type {hint!r}: use bool, int, float, str or Path")
    return hint, optional


def config_fields(cls: type) -> list[ConfigField]:
    """Describe a config dataclass; a :class:`ConfigError` if a field lacks a default or help."""
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config field {f.name!r} of {cls.__name__} has no default")
        help_text = f.metadata.get("help")
        if not help_text:
            raise ConfigError(f"config field {f.name!r} of {cls.__name__} has no help text")
        factory: Any = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else factory()
        kind, optional = _resolve(hints[f.name])
        field = ConfigField(f.name, kind, optional, default, help_text, **_bounds(cls, f, kind))
        try:
            check_value(field, default)
        except ConfigError as exc:
            raise ConfigError(f"the default of {cls.__name__}: {exc}") from None
        fields.append(field)
    return fields


def _bounds(cls: type, f: dataclasses.Field[Any], kind: type) -> dict[str, Any]:
    """The range a field declares in its metadata, with the int64 bounds for every int."""
    where = f"config field {f.name!r} of {cls.__name__}"
    declared = {key: f.metadata[key] for key in _RANGE_KEYS if key in f.metadata}
    if declared and kind not in (int, float):
        raise ConfigError(f"{where}: min and max apply to int and float fields only")
    for key, bound in declared.items():
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
            raise ConfigError(f"{where}: {key} must be a number, got {bound!r}")
        if kind is int and not isinstance(bound, int):
            raise ConfigError(f"{where}: {key} of an int field must be an int, got {bound!r}")
    finite = f.metadata.get("finite", True)
    if not isinstance(finite, bool):
        raise ConfigError(f"{where}: finite must be true or false, got {finite!r}")
    low, high = declared.get("min"), declared.get("max")
    if kind is int:
        low = INT64_MIN if low is None else max(low, INT64_MIN)
        high = INT64_MAX if high is None else min(high, INT64_MAX)
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{where}: min {low} is above max {high}")
    return {"min": low, "max": high, "finite": finite}


def check_value(field: ConfigField, value: Any) -> Any:
    """Refuse a typed value outside the field's range (``none`` passes for an optional field)."""
    if value is None:
        if field.optional:
            return value
        raise ConfigError(f"bad value None for {field.name}: expected {field.type_name}")
    if field.type not in (int, float) or isinstance(value, bool):
        return value
    if field.type is float and field.finite and not math.isfinite(value):
        raise ConfigError(f"bad value {value!r} for {field.name}: expected a finite float")
    below = field.min is not None and value < field.min
    above = field.max is not None and value > field.max
    if below or above:
        bounds = field.range_text or f"{_num(field.min or 0)} to {_num(field.max or 0)}"
        if field.type is int and not field.range_text:  # the int64 bounds: say so
            bounds = f"{INT64_MIN} to {INT64_MAX} (a 64-bit integer)"
        raise ConfigError(f"{field.name}={_shown(value)} is out of range (allowed: {bounds})")
    return value


def _shown(value: Any) -> str:
    """A value for an error line; a huge integer is shortened to its digit count."""
    text = repr(value)
    if isinstance(value, int) and len(text) > 40:
        return f"{text[:12]}...({len(text.lstrip('-'))} digits)"
    return text


def parse_value(field: ConfigField, text: str) -> Any:
    """Parse the text of ``--set key=text`` into the field's type."""
    raw = text.strip()
    if field.optional and raw.lower() in _NONE:
        return None
    try:
        if field.type is bool:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError(raw)
        value = field.type(raw)
    except ValueError:
        raise ConfigError(
            f"bad value {_short(text)} for {field.name}: expected {field.type_name}"
        ) from None
    return check_value(field, value)


def _short(text: str) -> str:
    """A user's text for an error line, shown literally but cut when it is very long."""
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}...({len(text)} characters)"


def coerce_value(field: ConfigField, value: Any) -> Any:
    """Check a value read from TOML (already typed) against the field; strings are parsed."""
    if isinstance(value, str) and field.type is not str:
        return parse_value(field, value)
    if value is None and field.optional:
        return None
    if field.type is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**1023:  # beyond what a float holds
            raise ConfigError(f"{field.name}={_shown(value)} is out of range for a float")
        return check_value(field, float(value))
    if isinstance(value, field.type) and (field.type is bool or not isinstance(value, bool)):
        return check_value(field, value)
    shown = _short(value) if isinstance(value, str) else _describe_value(value)
    raise ConfigError(f"bad value {shown} for {field.name}: expected {field.type_name}")


def _describe_value(value: Any) -> str:
    """A non-scalar TOML value for an error line: a table, an array, a date, or its repr."""
    if isinstance(value, dict):
        return "(a table)"
    if isinstance(value, list):
        return "(an array)"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"


def _field_for(fields: Mapping[str, ConfigField], key: str) -> ConfigField:
    """The field named ``key`` (dashes allowed for underscores), or an error listing valid keys."""
    field = fields.get(key.strip().replace("-", "_"))
    if field is None:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(fields)}")
    return field


def parse_assignments(cls: type, assignments: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings into typed values for the config dataclass ``cls``."""
    fields = {f.name: f for f in config_fields(cls)}
    values: dict[str, Any] = {}
    for item in assignments:
        if not isinstance(item, str):
            raise ConfigError(f"expected key=value, got {item!r}")
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"expected key=value, got {item!r}")
        field = _field_for(fields, key)
        values[field.name] = parse_value(field, text)
    return values


def read_toml(cls: type, path: Path, section: str | None = None) -> dict[str, Any]:
    """Read config values from a TOML file: flat keys, and a table named after the pipeline."""
    data = _load_toml(Path(path))
    fields = {f.name: f for f in config_fields(cls)}
    table = data.pop(section, None) if section and section not in fields else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"config file {path}: {section!r} must be a table ([{section}])")
    values = {}
    for source in (data, table or {}):
        for key, value in source.items():
            if isinstance(value, dict) and key.replace("-", "_") not in fields:
                raise ConfigError(
                    f"config file {path}: unknown table [{key}]; only a table named after the "
                    f"pipeline ([{section or 'PIPELINE'}]) is read"
                )
            try:
                field = _field_for(fields, key)
                values[field.name] = coerce_value(field, value)
            except ConfigError as exc:
                raise ConfigError(f"config file {path}: {exc}") from None
    return values


def _load_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML document; unreadable or malformed files are one clear error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def check_config(config: Any) -> None:
    """Check every value of a config instance against its field (type and range)."""
    for field in config_fields(type(config)):
        value = getattr(config, field.name)
        if value is not None and field.type is float and type(value) is int:
            value = float(value)
        if value is not None and not (
            isinstance(value, field.type) and (field.type is bool or not isinstance(value, bool))
        ):
            raise ConfigError(
                f"bad value {_describe_value(value)} for {field.name}: expected {field.type_name}"
            )
        check_value(field, value)


def build_config(
    cls: type,
    assignments: Iterable[str] = (),
    toml_path: Path | None = None,
    *,
    section: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """Make a config: defaults, then the TOML file, then ``--set`` values, then ``overrides``."""
    values: dict[str, Any] = {}
    if toml_path is not None:
        values.update(read_toml(cls, toml_path, section))
    values.update(parse_assignments(cls, assignments))
    values.update(overrides or {})
    config = cls(**values)
    check_config(config)
    return config
