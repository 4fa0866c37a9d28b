"""Config ranges: declared bounds, the 64-bit default for ints, finite floats, TOML shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tracer
from tracer.plugins.builtin.sentiment import SentimentConfig
from tracer.plugins.config import (
    INT64_MAX,
    ConfigError,
    build_config,
    check_config,
    config_fields,
    parse_assignments,
)
from tracer.plugins.manager import PluginError, PluginManager
from tracer.plugins.runner import run, run_pipeline
from tracer.store import open_store


@dataclass
class Ranged:
    width: int = field(default=4, metadata={"help": "width", "min": 1, "max": 64})
    count: int = field(default=0, metadata={"help": "any int"})
    cap: int | None = field(default=None, metadata={"help": "optional cap", "min": 1})
    rate: float = field(default=0.5, metadata={"help": "rate", "min": 0.0, "max": 1.0})
    scale: float = field(default=1.0, metadata={"help": "any finite float"})
    wild: float = field(default=1.0, metadata={"help": "any float", "finite": False})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("width=0", "width=0 is out of range (allowed: 1 to 64)"),
        ("width=65", "width=65 is out of range (allowed: 1 to 64)"),
        ("cap=0", "cap=0 is out of range (allowed: at least 1)"),
        ("rate=1.5", "rate=1.5 is out of range (allowed: 0.0 to 1.0)"),
        ("rate=-0.1", "rate=-0.1 is out of range (allowed: 0.0 to 1.0)"),
        ("count=9223372036854775808", "out of range (allowed: -9223372036854775808 to"),
        ("count=-9223372036854775809", "a 64-bit integer"),
        ("scale=nan", "bad value nan for scale: expected a finite float"),
        ("scale=inf", "bad value inf for scale: expected a finite float"),
        ("scale=1e999", "bad value inf for scale: expected a finite float"),
    ],
)
def test_config_range_refuses_out_of_range_values_naming_key_value_and_range(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_assignments(Ranged, [text])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_config_range_accepts_the_bounds_and_none() -> None:
    values = parse_assignments(
        Ranged, ["width=1", "width=64", "cap=none", f"count={INT64_MAX}", "wild=nan", "rate=1"]
    )
    assert values["width"] == 64 and values["cap"] is None and values["count"] == INT64_MAX
    assert values["rate"] == 1.0 and values["wild"] != values["wild"]  # NaN allowed when declared


def test_config_range_a_huge_integer_is_shortened_in_the_message() -> None:
    with pytest.raises(ConfigError, match=r"width=1{12}\.\.\.\(400 digits\) is out of range"):
        parse_assignments(Ranged, ["width=" + "1" * 400])


@given(st.integers())
def test_config_range_int_fields_keep_every_value_in_int64_or_refuse_it(value: int) -> None:
    try:
        parsed = parse_assignments(Ranged, [f"count={value}"])["count"]
    except ConfigError as exc:
        assert not -(2**63) <= value <= INT64_MAX
        assert "out of range" in str(exc)
    else:
        assert parsed == value and -(2**63) <= value <= INT64_MAX


def test_config_range_fields_report_their_range_text() -> None:
    fields = {f.name: f for f in config_fields(Ranged)}
    assert fields["width"].range_text == "1 to 64"
    assert fields["count"].range_text == ""
    assert fields["cap"].range_text == "at least 1"
    assert fields["scale"].range_text == "finite"
    assert fields["wild"].range_text == ""


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"min": "1"}, "min must be a number"),
        ({"min": 1.5}, "min of an int field must be an int"),
        ({"min": 5, "max": 1}, "min 5 is above max 1"),
        ({"min": 10}, "the default of Bad: n=3 is out of range"),
    ],
)
def test_config_range_bad_declarations_are_refused(metadata: dict, message: str) -> None:
    @dataclass
    class Bad:
        n: int = field(default=3, metadata={"help": "n", **metadata})

    with pytest.raises(ConfigError, match=message):
        config_fields(Bad)


def test_config_range_bad_declaration_names_the_plugin_at_load(write_plugin) -> None:
    path = write_plugin(
        "badrange",
        """
        from dataclasses import dataclass, field
        from tracer import hookimpl
        from tracer.plugins.pipeline import Pipeline

        @dataclass
        class C:
            n: int = field(default=0, metadata={"help": "n", "min": 1})

        @hookimpl
        def register_pipelines(register):
            register(Pipeline("p", "d", C, print, print, print))
        """,
    )
    with pytest.raises(PluginError, match=r"plugin 'badrange'.*n=0 is out of range"):
        _ = PluginManager.load([path], entry_points=False).pipelines


def test_config_range_sentiment_declares_its_ranges() -> None:
    fields = {f.name: f for f in config_fields(SentimentConfig)}
    for name in ("max_reviews", "seq_length", "batch_size", "embedding_dim", "hidden_dim"):
        assert fields[name].min == 1, name
    assert fields["epochs"].min == 1 and fields["steps_per_epoch"].min == 1
    assert (fields["drop_prob"].min, fields["drop_prob"].max) == (0.0, 1.0)
    assert fields["seed"].min == 0 and fields["seed"].max == INT64_MAX
    for name in ("max_reviews=0", "batch_size=0", "hidden_dim=0", "epochs=-1", "n_layers=0"):
        with pytest.raises(ConfigError, match="is out of range"):
            build_config(SentimentConfig, [name])


def test_config_range_check_config_refuses_an_instance_built_directly() -> None:
    with pytest.raises(ConfigError, match="epochs=-1 is out of range"):
        check_config(SentimentConfig(epochs=-1))
    with pytest.raises(ConfigError, match="bad value '3' for epochs: expected int"):
        check_config(SentimentConfig(epochs="3"))  # type: ignore[arg-type]
    check_config(SentimentConfig(lr=1))  # an int where a float is expected is fine


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("width = 0\n", "c.toml: width=0 is out of range (allowed: 1 to 64)"),
        ("width = 1.5\n", "c.toml: bad value 1.5 for width: expected int"),
        ("width = true\n", "c.toml: bad value True for width: expected int"),
        ("width = [1, 2]\n", "c.toml: bad value (an array) for width: expected int"),
        ("width = 1979-05-27\n", "bad value datetime.date(1979, 5, 27) for width"),
        ("scale = nan\n", "bad value nan for scale: expected a finite float"),
        ("count = 99999999999999999999\n", "count=99999999999999999999 is out of range"),
        ("rate = 1e400\n", "bad value inf for rate"),
        ("scale = " + "9" * 400 + "\n", "c.toml: scale=999999999999...(400 digits) is out of"),
        ("[width]\nx = 1\n", "c.toml: bad value (a table) for width: expected int"),
        ("[other]\nwidth = 2\n", "unknown table [other]; only a table named after the pipeline"),
        ("[ranged]\n[ranged.deep]\nx = 1\n", "unknown table [deep]"),
        ("ranged = 3\n", "'ranged' must be a table ([ranged])"),
        ("colour = 1\n", "unknown config key 'colour'; valid keys: width, count"),
        ("[ranged]\ncolour = 1\n", "unknown config key 'colour'"),
    ],
)
def test_config_range_toml_shapes_and_types_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        build_config(Ranged, (), write(tmp_path, text), section="ranged")
    assert message in str(error.value)


def test_config_range_toml_reads_flat_keys_and_the_pipeline_table(tmp_path: Path) -> None:
    path = write(tmp_path, "width = 2\ncap = 9\n[ranged]\nwidth = 3\nrate = 1\n")
    config = build_config(Ranged, (), path, section="ranged")
    assert (config.width, config.cap, config.rate) == (3, 9, 1.0)


def test_config_range_toml_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"width = \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        build_config(Ranged, (), path)


@pytest.mark.parametrize("every", [0, -1, 1.5, "2", True, None])
def test_config_range_trace_every_must_be_a_positive_int(every: object) -> None:
    with pytest.raises(ValueError, match="every must be a positive integer"):
        tracer.trace(torch.nn.Linear(2, 2), every=every)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": 0}, "every must be an integer of at least 1, got 0"),
        ({"every": -3}, "every must be an integer of at least 1, got -3"),
        ({"every": 2.0}, "every must be an integer of at least 1, got 2.0"),
        ({"every": True}, "every must be an integer of at least 1, got True"),
        ({"every": 2**63}, "every must be an integer of at least 1"),
        ({"seed": -1}, "seed must be an integer from 0 to 9223372036854775807, got -1"),
        ({"seed": 2**64}, "seed must be an integer from 0 to"),
        ({"seed": "7"}, "seed must be an integer from 0 to 9223372036854775807, got '7'"),
        ({"ops": "yes"}, "ops must be True or False, got 'yes'"),
        ({"grads": 1}, "grads must be True or False, got 1"),
        ({"name": 3}, "name must be a string, got 3"),
        ({"tags": {"a": 1}}, "tags must map strings to strings"),
        ({"device": 0}, "device must be a string such as 'cpu', got 0"),
    ],
)
def test_config_range_runner_run_refuses_bad_options_before_a_run(
    tmp_path: Path, options: dict, message: str
) -> None:
    db = tmp_path / "runs.db"
    with pytest.raises(ValueError) as error:
        run("sentiment", db=str(db), sets=["max_reviews=500"], **options)
    assert message in str(error.value)
    with open_store(db) as store:
        assert store.list_runs() == []


def test_config_range_runner_run_refuses_a_string_of_sets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sets must be a list of 'key=value' strings"):
        run("sentiment", db=str(tmp_path / "r.db"), sets="epochs=1")  # type: ignore[arg-type]


def test_config_range_run_pipeline_refuses_an_out_of_range_config(tmp_path: Path) -> None:
    manager = PluginManager.load(entry_points=False)
    pipeline = manager.pipeline("sentiment")
    with open_store(tmp_path / "r.db") as store:
        with pytest.raises(ConfigError, match="hidden_dim=0 is out of range"):
            run_pipeline(pipeline, SentimentConfig(hidden_dim=0), store=store, plugins=manager)
        with pytest.raises(ValueError, match="config must be a SentimentConfig, got dict"):
            run_pipeline(pipeline, {"epochs": 1}, store=store, plugins=manager)
        assert store.list_runs() == []


@given(st.sampled_from(["width", "count", "cap", "rate", "scale", "wild"]), st.text())
def test_config_range_any_text_parses_in_range_or_is_one_config_error(key: str, text: str) -> None:
    fields = {f.name: f for f in config_fields(Ranged)}
    try:
        value = parse_assignments(Ranged, [f"{key}={text}"])[key]
    except ConfigError as exc:
        assert key in str(exc)
    else:
        field_ = fields[key]
        if value is not None and field_.min is not None and value == value:
            assert field_.min <= value <= (field_.max if field_.max is not None else value)


def test_config_range_assignment_that_is_not_text_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected key=value, got 3"):
        parse_assignments(Ranged, [3])  # type: ignore[list-item]
