"""``tracer report`` files opened in Chromium with the network blocked: nothing but the file
is requested, no script of the user's runs, no policy violation; the flow, the diff's
highlights, the findings and the table tools work. Screenshots go to the artifacts folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from report_seed import SCRIPT, record_tiny, seed_hostile

from tracer.cli import cli
from tracer.store import open_store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reports written by the command from real tiny runs and a hostile one."""
    where = tmp_path_factory.mktemp("reports")
    db = where / "runs.db"
    record_tiny(db, "base", hidden=16)
    record_tiny(db, "wide", hidden=32)
    record_tiny(db, "broken", nan=True)
    store = open_store(db)
    try:
        seed_hostile(store)
    finally:
        store.close()
    wanted = {
        "run": ["base"],
        "diff": ["base", "wide", "--checks"],
        "checks": ["broken", "--checks"],
        "hostile": [SCRIPT],
    }
    out = {}
    for name, args in wanted.items():
        path = where / f"{name}.html"
        result = CliRunner().invoke(cli, ["report", *args, "-o", str(path), "--db", str(db)])
        assert result.exit_code == 0, result.output
        out[name] = path
    return out


@dataclass
class Opened:
    """A report open in a page, with what the page tried to fetch, said and popped up."""

    page: Any
    blocked: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def open_report(page: Any) -> Iterator[Any]:
    """Open a report file with every request that is not a ``file:`` URL aborted."""

    def opened(path: Path, scheme: str = "light") -> Opened:
        seen = Opened(page)

        def route(r: Any) -> None:
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                seen.blocked.append(r.request.url)
                r.abort()

        def dialog(d: Any) -> None:
            seen.dialogs.append(d.message)
            d.dismiss()

        page.route("**/*", route)
        page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
        page.on("dialog", dialog)
        page.emulate_media(color_scheme=scheme)
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        return seen

    yield opened


def shoot(page: Any, artifacts: str, name: str) -> None:
    page.screenshot(path=os.path.join(artifacts, f"report-{name}.png"), full_page=True)


def test_report_page_requests_nothing_but_itself(
    open_report: Any, reports: dict[str, Path], artifacts: str
) -> None:
    for scheme in ("light", "dark"):
        seen = open_report(reports["run"], scheme)
        assert seen.blocked == [] and seen.console == [] and seen.dialogs == []
        shoot(seen.page, artifacts, f"run-{scheme}")


def test_report_flow_table_shows_the_step(open_report: Any, reports: dict[str, Path]) -> None:
    page = open_report(reports["run"]).page
    rows = page.locator("#flow-table tbody tr")
    assert rows.count() == 8  # root, embedding, lstm, reshape, fc, view, act, [:, -1]
    lstm = page.locator("#flow-table tr", has_text="lstm").first
    assert "(4, 6, 16)" in lstm.inner_text() and "float32" in lstm.inner_text()
    assert page.locator("#flow-table tr.op").count() == 3
    assert page.locator("#layers-table svg.spark").count() >= 16


def test_report_filter_and_hide_ops_narrow_the_flow(
    open_report: Any, reports: dict[str, Path]
) -> None:
    page = open_report(reports["run"]).page
    page.fill("input.filter", "lstm")
    assert page.locator("#flow-table tbody tr:visible").count() == 1
    page.fill("input.filter", "")
    page.check("input.hide-ops")
    assert page.locator("#flow-table tbody tr:visible").count() == 5


def test_report_diff_highlights_the_changed_layers(
    open_report: Any, reports: dict[str, Path], artifacts: str
) -> None:
    seen = open_report(reports["diff"])
    page = seen.page
    changed = page.locator("#diff-table tr.st-changed")
    names = [changed.nth(i).locator("td.layer").inner_text() for i in range(changed.count())]
    assert "lstm" in names and "fc" in names and "embedding" not in names
    same = page.locator("#diff-table tr.st-same", has_text="embedding")
    colour = "el => getComputedStyle(el.querySelector('td')).backgroundColor"
    assert changed.first.evaluate(colour) != same.evaluate(colour)  # highlighted
    assert "(4, 6, 32)" in page.locator("#diff-table").inner_text()
    assert "The structure differs" in page.locator("#diff").inner_text()
    page.check("input.only-changes")
    assert page.locator("#diff-table tbody tr:visible").count() == changed.count()
    page.uncheck("input.only-changes")
    drift = page.locator("#diff-table .drift-line").first
    assert not drift.is_visible()
    page.check("input.show-drift")
    assert drift.is_visible() and "mean" in drift.inner_text()
    shoot(page, artifacts, "diff")
    assert seen.blocked == [] and seen.console == []


def test_report_findings_name_the_nan_layer_and_flag_its_row(
    open_report: Any, reports: dict[str, Path], artifacts: str
) -> None:
    seen = open_report(reports["checks"], "dark")
    page = seen.page
    findings = page.locator("#findings").inner_text()
    # step 0: the activation makes NaN; the NaN gradients then break the embedding's weights
    assert "act made" in findings and "embedding made" in findings and "2 errors" in findings
    flagged = page.locator("#flow-table tr.flag-here")  # the shown step is 0
    assert flagged.count() == 1 and flagged.locator("td.layer").inner_text() == "act"
    later = page.locator("#flow-table tr.flag-elsewhere")
    assert later.count() == 1 and later.locator("td.layer").inner_text() == "embedding"
    act = page.locator("#layers-table tr", has_text="MakesNaN")
    assert act.locator("td.bad").inner_text() == "0, 1, 2, 3"
    assert act.locator("svg.spark .bad").count() == 8  # mean and std at each step
    shoot(page, artifacts, "checks-dark")
    assert seen.blocked == [] and seen.console == []


def test_report_hostile_strings_render_as_text(
    open_report: Any, reports: dict[str, Path], artifacts: str
) -> None:
    seen = open_report(reports["hostile"])
    page = seen.page
    assert page.locator("h1").inner_text() == SCRIPT
    assert page.title().startswith(SCRIPT)
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    assert "<img src=" in page.locator("#run").inner_text()  # the config value, as text
    assert "ValueError: <script>alert(1)</script>\n</td>" in page.locator("pre.error").inner_text()
    shoot(page, artifacts, "hostile")
    assert seen.dialogs == [] and seen.blocked == [] and seen.console == []
