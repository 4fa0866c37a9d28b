"""Typed pipeline configs: describe a config dataclass, parse ``--set key=value`` and TOML files."""

from __future__ import annotations

import dataclasses
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

    @property
    def type_name(self) -> str:
        """The expected type as a user reads it: ``int``, ``float or none``."""
        names: dict[type, str] = {Path: "path", str: "text"}
        base = names.get(self.type, self.type.__name__)
        return f"{base} or none" if self.optional else base


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
        fields.append(ConfigField(f.name, kind, optional, default, help_text))
    return fields


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
        return field.type(raw)
    except ValueError:
        raise ConfigError(
            f"bad value {text!r} for {field.name}: expected {field.type_name}"
        ) from None


def coerce_value(field: ConfigField, value: Any) -> Any:
    """Check a value read from TOML (already typed) against the field; strings are parsed."""
    if isinstance(value, str) and field.type is not str:
        return parse_value(field, value)
    if value is None and field.optional:
        return None
    if field.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, field.type) and (field.type is bool or not isinstance(value, bool)):
        return value
    raise ConfigError(f"bad value {value!r} for {field.name}: expected {field.type_name}")


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
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"expected key=value, got {item!r}")
        field = _field_for(fields, key)
        values[field.name] = parse_value(field, text)
    return values


def read_toml(cls: type, path: Path, section: str | None = None) -> dict[str, Any]:
    """Read config values from a TOML file (flat keys, or a table named after the pipeline)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if section and isinstance(data.get(section), dict):
        data = data[section]
    fields = {f.name: f for f in config_fields(cls)}
    values = {}
    for key, value in data.items():
        field = _field_for(fields, key)
        values[field.name] = coerce_value(field, value)
    return values


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
    return cls(**values)
