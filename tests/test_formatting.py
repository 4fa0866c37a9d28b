"""One formatting for the CLI and the TUI: each quantity reads the same on both sides."""

from __future__ import annotations

import time

import pytest

from tracer import formatting
from tracer.cli import render
from tracer.records import RunInfo
from tracer.tui import formatting as tui_fmt
from tracer.tui import runlist

VALUES = [None, 0.0, 0.0123, 1234.7, 30000.0, -0.00043512, 2e-5, 3313313.5]
VALUES += [float("nan"), float("inf"), float("-inf")]


def test_formatting_number_full_has_four_significant_digits() -> None:
    assert [formatting.number(v) for v in VALUES] == [
        "-",
        "0",
        "0.0123",
        "1235",
        "30000",
        "-0.0004351",
        "2e-05",
        "3.313e+06",
        "nan",
        "inf",
        "-inf",
    ]


def test_formatting_number_compact_has_two_significant_digits() -> None:
    got = [formatting.number(v, "compact") for v in (0.509, 0.00618, -0.00072, 1.0, 123456.0)]
    assert got == ["0.51", "0.0062", "-0.00072", "1", "1.2e+05"]


def test_formatting_count_full_and_compact() -> None:
    counts = (None, 513, 295_168, 1_114_112, 3_313_313_000)
    assert [formatting.count(n) for n in counts] == [
        "-",
        "513",
        "295,168",
        "1,114,112",
        "3,313,313,000",
    ]
    assert [formatting.count(n, "compact") for n in counts] == [
        "-",
        "513",
        "295k",
        "1.11M",
        "3.31G",
    ]


def test_formatting_duration_precision_follows_magnitude() -> None:
    seconds = (None, 0.42, 8.34, 9.96, 31.4, 59.6, 72, 7500)
    assert [formatting.duration(s) for s in seconds] == [
        "-",
        "0.4s",
        "8.3s",
        "10.0s",
        "31s",
        "1m00s",
        "1m12s",
        "2h05m",
    ]


def test_formatting_timestamp_full_and_compact() -> None:
    stamp = time.mktime((2026, 11, 26, 10, 42, 3, 0, 0, -1))
    assert formatting.timestamp(stamp) == "2026-11-26 10:42:03"
    assert formatting.timestamp(stamp, "compact") == "2026-11-26 10:42"
    now = time.time()
    assert formatting.timestamp(now, "compact") == time.strftime("%H:%M:%S", time.localtime(now))
    assert formatting.timestamp(None) == "-"


@pytest.mark.parametrize("value", VALUES)
def test_formatting_cli_and_tui_print_a_value_alike(value: float | None) -> None:
    assert render.fmt_number(value) == tui_fmt.number(value)


def test_formatting_cli_and_tui_runs_tables_agree() -> None:
    now = time.time()
    run = RunInfo(
        id=7,
        name="r",
        pipeline="p",
        status="completed",
        steps=3,
        started_at=now - 31.4,
        finished_at=now,
        last_metrics={"loss": 0.41327, "accuracy": 0.875},
    )
    table = render.runs_table([run])
    cli = {str(column.header): next(iter(column.cells)) for column in table.columns}
    tui = dict(zip([c.key for c in runlist.columns([])], runlist.cells(run, []), strict=True))
    assert (cli["took"], cli["loss"], cli["accuracy"]) == ("31s", "0.4133", "0.875")
    assert (tui["took"], tui["loss"], tui["acc"]) == (cli["took"], cli["loss"], cli["accuracy"])
