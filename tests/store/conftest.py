"""Store fixtures: one ``store`` per backend (in-memory SQLite, SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from store_records import sample_flow, sample_modules

from tracer.store import Store, open_store

__all__ = ["sample_flow", "sample_modules"]


@pytest.fixture(
    params=["sqlite-memory", "sqlite-file", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """A fresh store on each backend."""
    if request.param == "sqlite-memory":
        url = "sqlite://"
    elif request.param == "sqlite-file":
        url = str(tmp_path / "tracer.db")
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()
