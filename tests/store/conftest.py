"""Store fixtures: one ``store`` per backend (in-memory SQLite, SQLite file, PostgreSQL), and
``db_url`` for tests that open a fresh database themselves (SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.store import Store, open_store

POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


def _url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite-memory":
        return "sqlite://"
    if backend == "sqlite-file":
        return f"sqlite:///{tmp_path / 'tracer.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite-memory", "sqlite-file", POSTGRES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store on each backend."""
    opened = open_store(_url(request.param, request, tmp_path))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["sqlite-file", POSTGRES])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database on each backend that lives outside this process."""
    return _url(request.param, request, tmp_path)
