"""``tracer report`` without a browser: the HTML parsed with html.parser (self-contained,
escaped, the flow, the diff and the findings as the store and tracer diff have them), the
command's errors, and what the page costs."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from report_seed import IMG, LINK, SCRIPT, record_tiny, seed_hostile, seed_long

from tracer.checks.builtin import BUILTIN_RULES
from tracer.cli import cli
from tracer.store import Store, StoreError, open_store
from tracer.web.report import Limits, gather, render, sample_steps

ROOT = Path(__file__).parents[2]


class Page(HTMLParser):
    """Every element with its attributes, the text, and the text of each element by id."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        current = self._open[-1] if self._open else ""
        if current == "script":
            self.scripts.append(data)
        elif current == "style":
            self.styles.append(data)
        else:
            self.data.append(data)

    @property
    def text(self) -> str:
        return "".join(self.data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    def with_class(self, tag: str, *classes: str) -> list[dict[str, str | None]]:
        """The ``tag`` elements that have every one of ``classes``."""
        return [a for a in self.tags(tag) if set(classes) <= set((a.get("class") or "").split())]


def report(*args: object) -> Result:
    """``tracer report ARGS`` in-process."""
    return CliRunner().invoke(cli, ["report", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real tiny runs (hidden 16 and 32, one whose activation makes NaN) and a hostile one."""
    path = tmp_path_factory.mktemp("report") / "runs.db"
    record_tiny(path, "base", hidden=16)
    record_tiny(path, "wide", hidden=32)
    record_tiny(path, "broken", nan=True)
    store = open_store(path)
    try:
        seed_hostile(store)
    finally:
        store.close()
    return path


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    opened = open_store(db)
    yield opened
    opened.close()


def page_of(store: Store, *args: object, **kwargs: object) -> Page:
    return Page(render(gather(store, *args, **kwargs)))  # type: ignore[arg-type]


def test_report_loads_nothing_from_outside(store: Store) -> None:
    page = page_of(store, "base", "wide", rules=BUILTIN_RULES)
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no inline handlers
            if name in ("src", "href", "action", "srcset", "data", "xlink:href"):
                assert (value or "").startswith("#"), (tag, name, value)
    assert [a for a in page.tags("script") if "src" in a] == []
    assert page.tags("link") == [] and page.tags("img") == [] and page.tags("iframe") == []
    css = "".join(page.styles)
    assert "@import" not in css and "url(" not in css and "@font-face" not in css


def test_report_policy_allows_only_its_own_style_and_script(store: Store) -> None:
    page = page_of(store, "base")
    [meta] = [m for m in page.tags("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    policy = meta["content"] or ""
    assert "default-src 'none'" in policy
    for kind, bodies in (("style", page.styles), ("script", page.scripts)):
        [body] = bodies
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind}-src 'sha256-{digest}'" in policy


def test_report_escapes_every_user_string(store: Store) -> None:
    page = page_of(store, SCRIPT)
    text = page.text
    # name, config key and value, tag, module path, type, slot, metric, note and error
    for shown in (SCRIPT, IMG, LINK, f"enc{IMG}", f"Linear{SCRIPT}", f"loss{SCRIPT}"):
        assert shown in text, shown
    assert f"note {SCRIPT}" in text and f"ValueError: {SCRIPT}" in text
    assert len(page.tags("script")) == 1 and page.tags("img") == [] and page.tags("a") != []
    assert all((a.get("href") or "").startswith("#") for a in page.tags("a"))
    [title] = [d for d in page.data if d.endswith("layer-tracer report") and SCRIPT in d]
    assert title.startswith(SCRIPT)


def test_report_flow_table_lists_every_call_of_the_step(store: Store) -> None:
    run = store.get_run("base")
    flow = store.flow(run.id, store.steps(run.id)[1])
    page = page_of(store, "base", step=store.steps(run.id)[1])
    rows = page.with_class("tr", "call")
    assert len(rows) == len(flow)
    assert len(page.with_class("tr", "call", "op")) == sum(1 for c in flow if c.kind == "op") > 0
    text = page.text
    assert "(4, 6, 16)" in text and "int64 → float32" in text and "· reshape" in text


def test_report_layers_sample_every_traced_step_of_a_short_run(store: Store) -> None:
    data = gather(store, "base")
    assert data.sampled == data.steps and len(data.steps) == 4
    assert len(Page(render(data)).with_class("svg", "spark")) >= 2 * len(data.flow)


def test_report_diff_is_tracer_diffs_alignment(store: Store) -> None:
    expected = store.diff("base", "wide")
    page = page_of(store, "base", "wide")
    marked = [
        (a.get("class") or "").split()[0]
        for a in page.tags("tr")
        if (a.get("class") or "").startswith("st-")
    ]
    kinds = {"same": "st-same", "added": "st-added", "removed": "st-removed"}
    assert marked == [kinds.get(r.status, "st-changed") for r in expected.rows]
    assert "st-changed" in marked and "The structure differs" in page.text
    assert "hidden_dim" in page.text and "(4, 6, 32)" in page.text


def test_report_diff_of_a_run_with_itself_says_same_structure(store: Store) -> None:
    page = page_of(store, "base", "base")
    assert page.with_class("tr", "st-changed") == [] and "Same structure and config" in page.text


def test_report_checks_list_findings_and_flag_the_layer(store: Store) -> None:
    page = page_of(store, "broken", rules=BUILTIN_RULES)
    assert "act made" in page.text and "NaN" in page.text
    assert len(page.with_class("tr", "finding")) >= 1
    flagged = page.with_class("tr", "flag-here")
    assert flagged and all("flag-error" in (a.get("class") or "") for a in flagged)
    clean = page_of(store, "base", rules=BUILTIN_RULES)
    assert "Nothing found." in clean.text and clean.with_class("tr", "flag-here") == []


def test_report_bounds_are_stated_on_the_page(store: Store) -> None:
    limits = Limits(flow_rows=3, layers=2, points=2, diff_rows=4)
    data = gather(store, "base", "wide", limits=limits)
    page = Page(render(data))
    assert len(page.with_class("tr", "call")) == 3
    assert "The first 3 calls are shown" in page.text
    assert data.sampled == (data.steps[0], data.steps[-1])
    assert "sampled evenly from 4" in page.text and f"2 of {len(data.flow)} calls" in page.text
    changed = sum(1 for r in data.diff.rows if r.status != "same") if data.diff else 0
    diff_rows = [a for a in page.tags("tr") if (a.get("class") or "").startswith("st-")]
    assert len(diff_rows) == 4 and changed >= 3
    assert page.with_class("tr", "gap") and "unchanged row" in page.text


def test_report_of_a_run_without_traced_steps_says_so(store: Store) -> None:
    empty = store.create_run(name="empty", pipeline="tiny", config={"hidden_dim": 16})
    store.finish_run(empty.id, "failed", error="RuntimeError: out of memory")
    page = page_of(store, empty.id)
    assert "This run recorded no traced step." in page.text and "out of memory" in page.text
    assert [a["href"] for a in page.tags("a")] == ["#run", "#flow"]
    with pytest.raises(StoreError, match="no traced step 0"):
        gather(store, empty.id, step=0)
    compared = page_of(store, "base", empty.id)
    assert "Nothing to compare: a run has no traced steps." in compared.text
    assert len(compared.with_class("tr", "st-removed")) == len(store.flow(1, 0))


def test_sample_steps_keeps_the_first_and_the_last() -> None:
    steps = list(range(0, 10_000, 10))
    picked = sample_steps(steps, 40)
    assert len(picked) == 40 and picked[0] == 0 and picked[-1] == 9990
    assert picked == sorted(set(picked)) and sample_steps(steps[:5], 40) == steps[:5]


# -- the command ------------------------------------------------------------------------------


def test_report_command_writes_the_file(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = report("base", "wide", "-o", out, "--db", db, "--checks")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.read_text().startswith("<!doctype html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "nope"),
        (["base", "nope"], "nope"),
        (["base", "--step", "99"], "no traced step 99"),
        (["base", "wide", "--step", "99"], "no traced step 99"),
    ],
)
def test_report_bad_run_or_step_is_one_line_and_exit_2(
    db: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "r.html"
    out.write_text("the previous report")
    result = report(*args, "-o", out, "--db", db)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert out.read_text() == "the previous report"  # untouched, no temporary file left
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


@pytest.mark.parametrize("where", ["missing/r.html", "."])
def test_report_unwritable_output_is_one_line_and_exit_2(
    db: Path, tmp_path: Path, where: str
) -> None:
    result = report("base", "-o", tmp_path / where, "--db", db)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "cannot write" in result.output
    assert list(tmp_path.iterdir()) == []


def test_report_missing_database_is_exit_2(tmp_path: Path) -> None:
    result = report("base", "-o", tmp_path / "r.html", "--db", tmp_path / "none.db")
    assert result.exit_code == 2 and "no database" in result.output
    assert list(tmp_path.iterdir()) == []


PLUGIN_RULE = """
from tracer import hookimpl
from tracer.checks import Finding, Rule


def watch(records, limits):
    for step in records.steps:
        for call in records.flow(step):
            if call.module == "fc":
                yield Finding(
                    rule="fc-watch", severity="warning", module="fc", call_index=0,
                    kind="module", slot="0", role="output", step=step, seq=call.seq,
                    message="fc is watched <b>closely</b>",
                )


@hookimpl
def register_checks(register):
    register(Rule(name="fc-watch", severity="warning", summary="watches fc", check=watch))
"""


def test_report_checks_count_a_plugins_rules(db: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "watch.py"
    plugin.write_text(PLUGIN_RULE)
    out = tmp_path / "r.html"
    result = report("base", "--checks", "--plugin", plugin, "-o", out, "--db", db)
    assert result.exit_code == 0, result.output
    page = Page(out.read_text())
    assert "fc is watched <b>closely</b>" in page.text and "fc-watch" in page.text
    [flagged] = page.with_class("tr", "flag-here")
    assert "flag-warning" in (flagged.get("class") or "")
    assert "4 warnings" in page.text and page.tags("b") == []


def test_report_never_loads_torch(db: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom tracer.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n    assert not done.code\n"
        "assert 'torch' not in sys.modules, 'torch loaded'\n"
        "import tracer.web.report, tracer.web.report_page\n"
        "assert 'torch' not in sys.modules\n"
    )
    args = ["report", "base", "wide", "--checks", "-o", tmp_path / "r.html", "--db", db]
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


# -- what it costs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_report_of_a_long_wide_run_stays_light(tmp_path: Path) -> None:
    """1,000 traced steps through 500 layers: a bounded page, and the page says so."""
    store = open_store(tmp_path / "long.db")
    try:
        seed_long(store, steps=1000, layers=500)
        started = time.perf_counter()
        data = gather(store, "long")
        text = render(data)
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    limits = Limits()
    assert len(text.encode()) < 1_000_000
    assert len(data.sampled) == limits.points and data.sampled[-1] == 999
    page = Page(text)
    assert len(page.with_class("tr", "call")) == 501  # the whole step: under the bound
    assert re.search(r"sampled evenly from 1,000", page.text)
    assert f"{limits.layers} of 501 calls" in page.text
    assert len(page.with_class("svg", "spark")) == 2 * limits.layers
    assert elapsed < 20  # about 1.4 s here: a guard against reading every step
