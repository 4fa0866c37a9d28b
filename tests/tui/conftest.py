"""Fixtures for the inspector's tests: a real SQLite store seeded with hand-made runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tui_seed import frozen_provenance, seed_run

from tracer.store import Store, open_store
from tracer.tui.app import TracerApp
from tracer.tui.data import StoreReader


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
    return lambda: TracerApp(StoreReader(seeded.store, "tracer.db"), poll_interval=0.1)
