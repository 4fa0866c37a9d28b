"""Typed pipeline configs: ``--set`` parsing, TOML files and the errors users see."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tracer.plugins.config import ConfigError, build_config, config_fields, parse_assignments
from tracer.plugins.pipeline import config_dict


@dataclass
class Example:
    count: int = field(default=3, metadata={"help": "how many"})
    rate: float = field(default=0.5, metadata={"help": "how fast"})
    on: bool = field(default=False, metadata={"help": "switch"})
    label: str = field(default="x", metadata={"help": "a label"})
    limit: int | None = field(default=None, metadata={"help": "optional cap"})
    where: Path | None = field(default=None, metadata={"help": "a folder"})


def test_config_fields_describe_types_defaults_and_help() -> None:
    fields = {f.name: f for f in config_fields(Example)}
    assert fields["count"].type is int and fields["count"].default == 3
    assert fields["limit"].optional and fields["limit"].type_name == "int or none"
    assert fields["where"].type_name == "path or none"
    assert fields["rate"].help == "how fast"


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("count=7", "count", 7),
        ("rate=1e-3", "rate", 0.001),
        ("on=yes", "on", True),
        ("on=false", "on", False),
        ("label=hello world", "label", "hello world"),
        ("limit=none", "limit", None),
        ("limit=12", "limit", 12),
        ("where=/tmp/data", "where", Path("/tmp/data")),
        ("rate=2", "rate", 2.0),
    ],
)
def test_config_set_parses_to_the_field_type(text: str, key: str, value: object) -> None:
    assert parse_assignments(Example, [text]) == {key: value}


def test_config_unknown_key_lists_the_valid_keys() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'cuont'; valid keys: count, rate"):
        parse_assignments(Example, ["cuont=1"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("count=many", "expected int"), ("on=maybe", "expected bool"), ("rate=x", "float")],
)
def test_config_bad_value_names_the_expected_type(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_assignments(Example, [text])


def test_config_assignment_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_assignments(Example, ["count"])


def test_config_none_is_refused_for_a_required_number() -> None:
    with pytest.raises(ConfigError, match="expected int"):
        parse_assignments(Example, ["count=none"])


def test_config_toml_then_set_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('count = 5\nrate = 1\nlabel = "from-file"\n')
    config = build_config(Example, ["label=cli"], path, overrides={"on": True})
    assert (config.count, config.rate, config.label, config.on) == (5, 1.0, "cli", True)


def test_config_toml_section_named_after_the_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[example]\ncount = 9\n")
    assert build_config(Example, (), path, section="example").count == 9


def test_config_toml_errors_are_clear(tmp_path: Path) -> None:
    bad_type = tmp_path / "a.toml"
    bad_type.write_text('count = "lots"\n')
    with pytest.raises(ConfigError, match="bad value 'lots' for count: expected int"):
        build_config(Example, (), bad_type)
    broken = tmp_path / "b.toml"
    broken.write_text("count = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        build_config(Example, (), broken)
    with pytest.raises(ConfigError, match="cannot read config file"):
        build_config(Example, (), tmp_path / "missing.toml")
    wrong = tmp_path / "c.toml"
    wrong.write_text("on = 1\n")
    with pytest.raises(ConfigError, match="expected bool"):
        build_config(Example, (), wrong)


def test_config_dict_is_json_friendly() -> None:
    values = config_dict(Example(where=Path("/x")))
    assert values == {
        "count": 3,
        "rate": 0.5,
        "on": False,
        "label": "x",
        "limit": None,
        "where": "/x",
    }


def test_config_field_without_default_is_refused() -> None:
    @dataclass
    class NoDefault:
        n: int = field(metadata={"help": "n"})

    with pytest.raises(ConfigError, match="'n' of NoDefault has no default"):
        config_fields(NoDefault)


def test_config_unsupported_type_is_refused() -> None:
    @dataclass
    class Listy:
        xs: list = field(default_factory=list, metadata={"help": "xs"})

    with pytest.raises(ConfigError, match="unsupported config type"):
        config_fields(Listy)
