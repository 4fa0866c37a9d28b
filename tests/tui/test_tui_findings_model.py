"""The findings as the screens show them (no app): which step a finding holds at, the runs
list's counts, flow markers, the plot column of a step; the data layer's checks."""

from __future__ import annotations

import time
from dataclasses import replace

from tracer.checks import Finding, check_run
from tracer.checks.builtin import BUILTIN_RULES, nan
from tracer.store import open_store
from tracer.tui import findings
from tracer.tui.data import QUIET_S, StoreReader
from tracer.tui.formatting import sparkline
from tracer.tui.widgets.stat_plots import column_of


def finding(step: int, until: int | None = None, **fields: object) -> Finding:
    base: dict[str, object] = {
        "rule": "nan",
        "severity": "error",
        "module": "log",
        "call_index": 0,
        "kind": "module",
        "slot": "0",
        "role": "output",
        "message": "made NaN",
    }
    base.update(fields)
    return Finding(step=step, until=until, **base)  # type: ignore[arg-type]


def test_findings_hold_from_their_first_step_through_until() -> None:
    once, lasting = finding(20), finding(20, until=40)
    assert [findings.holds_at(once, s) for s in (10, 20, 30)] == [False, True, False]
    assert [findings.holds_at(lasting, s) for s in (10, 20, 30, 40, 50)] == [
        False,
        True,
        True,
        True,
        False,
    ]


def test_findings_at_a_step_are_grouped_by_the_call_they_are_about() -> None:
    a, b = finding(0), finding(0, rule="drift", severity="warning")
    op = finding(0, module="", kind="op", op="view", rule="drift", severity="warning")
    later = finding(5, module="head")
    grouped = findings.at_step([a, b, op, later], 0)
    assert grouped == {("log", 0, "module", None): (a, b), ("", 0, "op", "view"): (op,)}


def test_counts_text_shows_errors_and_warnings_only_and_question_mark_on_failure() -> None:
    text = findings.counts_text({"error": 2, "warning": 1, "info": 7})
    assert text.plain == "2E 1W"
    assert [text.plain[s.start : s.end] for s in text.spans] == ["2E", "1W"]
    assert [s.style for s in text.spans] == ["bold red", "bold yellow"]
    assert findings.counts_text({"error": 0, "warning": 3, "info": 0}).plain == "3W"
    assert findings.counts_text({"error": 0, "warning": 0, "info": 4}).plain == ""
    assert findings.counts_text(None).plain == "?"


def test_marker_names_each_rule_once_most_severe_first_literally() -> None:
    marks = [
        finding(0, rule="drift", severity="info"),
        finding(0, slot="1"),
        finding(0, rule="nan"),
        finding(0, rule="dead-units", severity="warning"),
    ]
    text = findings.marker(marks)
    assert text.plain == "⚑ nan dead-units drift"
    styles = {text.plain[s.start : s.end]: s.style for s in text.spans}
    assert styles == {
        "⚑": "bold red",
        "nan": "bold red",
        "dead-units": "bold yellow",
        "drift": "dim",
    }
    hostile = finding(0, module="[red]x", slot="[b]0", message="[bold]\x1b[31mboom")
    cells = [c.plain for c in findings.cells(hostile)]
    assert cells[2:] == ["[red]x", "output [b]0", "0", "[bold]\\x1b[31mboom"]
    assert findings.steps_text(finding(3, until=9)) == "3-9"


def test_column_of_a_step_is_where_the_sparkline_draws_it() -> None:
    steps = [0, 10, 20, 30]
    # four steps stretched over 20 columns: step 20 starts at column 10
    assert column_of(20, steps, 20) == 10
    assert column_of(15, steps, 20) == 10  # not traced: the next traced step
    assert column_of(99, steps, 20) == 15  # past the end: the last step's column
    # a step whose value stands out is drawn in the marked column
    values = [0.0 if s != 20 else 1.0 for s in steps]
    assert sparkline(values, 20)[column_of(20, steps, 20)] == "█"
    many = list(range(100))  # more steps than columns: four steps a column
    assert column_of(72, many, 25) == 18
    assert column_of(73, many, 25) == 18  # not drawn itself: the column of the step before


def test_reader_report_matches_tracer_check_and_is_cached_per_size_and_status(flagged) -> None:
    store = open_store(flagged.path)
    try:
        reader = StoreReader(store, "tracer.db")
        run = store.get_run(flagged.nan)
        report = reader.report(run, BUILTIN_RULES)
        assert report.findings == check_run(store, run, BUILTIN_RULES).findings
        assert reader.report(run, BUILTIN_RULES) is report
        assert reader.cached_report(run, BUILTIN_RULES) is report
        assert reader.cached_report(run, (nan.RULE,)) is None  # other rules: not checked yet
        grown = replace(run, steps=run.steps + 1)
        assert reader.cached_report(grown, BUILTIN_RULES) is None
        assert reader.cached_report(replace(run, status="failed"), BUILTIN_RULES) is None
    finally:
        store.close()


def test_reader_report_waits_while_the_user_is_at_the_keys(flagged) -> None:
    store = open_store(flagged.path)
    try:
        reader = StoreReader(store, "tracer.db")
        run = store.get_run(flagged.healthy)
        start = time.monotonic()
        reader.hold_background()
        reader.report(run, (nan.RULE,))
        assert time.monotonic() - start >= QUIET_S * 0.9
        start = time.monotonic()
        reader.report(replace(run, steps=run.steps + 1), (nan.RULE,))  # not held: at once
        assert time.monotonic() - start < QUIET_S
    finally:
        store.close()
