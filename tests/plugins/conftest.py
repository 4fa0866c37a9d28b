"""Fixtures for the plugin tests: plugin files written into tmp_path, the tiny test plugin."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_plugin(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a plugin file ``name.py`` with the given source into tmp_path."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    return write


@pytest.fixture
def tiny_plugin() -> Path:
    """The test plugin file with the ``tiny`` pipeline, a statistic, an exporter, every hook."""
    return Path(__file__).with_name("tiny_plugin.py")
