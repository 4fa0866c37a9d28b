"""Fixtures for the inspector's tests: a real SQLite store seeded with hand-made runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from tui_seed import NAN_STEP, frozen_provenance, record_log_run, seed_run

from tracer.checks import Rule
from tracer.checks.builtin import nan
from tracer.store import Store, open_store
from tracer.tui.app import TracerApp
from tracer.tui.data import StoreReader

#: The rules the inspector's tests check with (the built-in ones grow; these stay put).
NAN_ONLY: tuple[Rule, ...] = (nan.RULE,)


@dataclass
class Seeded:
    """A database file with two completed sentiment runs, a live one and a tricky name."""

    path: Path
    store: Store
    baseline: int
    small: int
    tricky: int
    live: int


@pytest.fixture(autouse=True)
def _steady_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One time zone, so that times read the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Seeded]:
    """Four runs recorded through the real store API (the last one still running)."""
    path = tmp_path / "tracer.db"
    store = open_store(path)
    with frozen_provenance(monkeypatch) as clock:
        baseline = seed_run(store, "baseline", hidden=512, clock=clock)
        small = seed_run(store, "small", hidden=256, clock=clock)
        tricky = seed_run(store, "[bold]x[/]", hidden=128, status="failed", clock=clock)
    # the live run keeps this process's host and pid, so the store sees it alive
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: clock[0])
        live = seed_run(store, "live", hidden=512, steps=1, status=None, pipeline="sentiment")
    yield Seeded(path, store, baseline, small, tricky, live)
    store.close()


@pytest.fixture
def make_app(seeded: Seeded) -> Callable[[], TracerApp]:
    """A factory of apps on the seeded database (fast polling, so live tests stay short)."""
    # A fixed location label: the real path changes from run to run and shows in the title.
    # The app shares the fixture's store: opening the same SQLite file a second time in one
    # process (open_store reads the file's header) drops the locks of the first store's
    # connections, after which they miss what another process writes.
    # Only the nan rule checks: the screens stay the same as more built-in rules are added.
    reader = StoreReader(seeded.store, "tracer.db")
    return lambda: TracerApp(reader, rules=NAN_ONLY, poll_interval=0.1)


@dataclass
class Flagged:
    """A database with a healthy traced run and, newer, one whose ``log`` layer makes NaN."""

    path: Path
    healthy: int
    nan: int


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flagged]:
    """Both runs traced once per test module with the real tracer (torch) into SQLite, with
    the provenance frozen so that snapshots do not change."""
    path = tmp_path_factory.mktemp("checks") / "tracer.db"
    with pytest.MonkeyPatch.context() as patch, frozen_provenance(patch):
        healthy = record_log_run(path, "healthy", nan_from=None)
        nan = record_log_run(path, "log-nan", nan_from=NAN_STEP)
    yield Flagged(path, healthy, nan)


@pytest.fixture
def flagged_app(flagged: Flagged) -> Iterator[Callable[..., TracerApp]]:
    """A factory of apps on the flagged database, checking with the nan rule unless given
    ``rules=``."""
    store = open_store(flagged.path)

    def make(rules: Sequence[Rule] = NAN_ONLY) -> TracerApp:
        return TracerApp(StoreReader(store, "tracer.db"), rules=rules, poll_interval=0.1)

    yield make
    store.close()
