"""Fixtures of the core tests: the two statistics paths, the two tensor probes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType

import pytest

import tracer.core.probe
import tracer.core.stats


def _path(
    param: str,
    without: str,
    monkeypatch: pytest.MonkeyPatch,
    compiled: tuple[ModuleType, str],
    need: Callable[[], None],
) -> str:
    """Take the compiled part (``module.attribute``) away for the ``without`` param; the other
    one needs it built (skipped without it, failed under ``$TRACER_REQUIRE_EXTENSIONS``)."""
    module, attribute = compiled
    if param == without:
        monkeypatch.setattr(module, attribute, None)
    else:
        need()
    return param


@pytest.fixture(params=["kernel", "torch"])
def stats_path(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    need_extension: Callable[[str], None],
) -> str:
    """Run a test with the compiled kernel and again with torch's reductions alone (the path of
    an install built without a C compiler). A collector picks its path when it is made."""
    compiled = (tracer.core.stats, "_float_stats")
    need = functools.partial(need_extension, "speedups")
    path = _path(str(request.param), "torch", monkeypatch, compiled, need)
    if path == "torch":  # the integer pass is the kernel's too
        monkeypatch.setattr(tracer.core.stats, "_int_stats", None)
    return path


@pytest.fixture
def torch_stats_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only torch's reductions (the row buffers and chunked sums), as without the kernel."""
    monkeypatch.setattr(tracer.core.stats, "_float_stats", None)
    monkeypatch.setattr(tracer.core.stats, "_int_stats", None)


@pytest.fixture(params=["compiled", "python"])
def probe_path(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    need_extension: Callable[[str], None],
) -> str:
    """Run a test with the compiled tensor probe and again with the Python one (the path of an
    install built without torch at build time). A trace picks its probe when it is made."""
    compiled = (tracer.core.probe, "_CompiledProbe")
    need = functools.partial(need_extension, "probe")
    return _path(str(request.param), "python", monkeypatch, compiled, need)
