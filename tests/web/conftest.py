"""Chromium for the browser tests: the system's browser (Debian's ``chromium``) under Playwright.

Playwright's own browser downloads are not used: the tests point it at the installed browser
with ``executable_path``. Without a browser or Playwright the tests fail when ``$CI`` is set
(CI installs both) and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _unavailable(reason: str) -> None:
    message = f"no browser for the browser tests: {reason}"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def chromium_path() -> str | None:
    """The system browser's executable, if one is installed."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium, shared by the session (per xdist worker)."""
    executable = chromium_path()
    if executable is None:
        _unavailable("install Debian's chromium package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("install playwright (pip install playwright)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in its own context (no shared cookies or storage between tests)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def artifacts() -> str:
    """Where tests keep screenshots (``$TRACER_TEST_ARTIFACTS``, default ``test-artifacts/``)."""
    where = os.environ.get("TRACER_TEST_ARTIFACTS", "test-artifacts")
    os.makedirs(where, exist_ok=True)
    return where
