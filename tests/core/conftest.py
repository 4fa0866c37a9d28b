"""Fixtures of the core tests: the two statistics paths, the two tensor probes."""

from __future__ import annotations

from types import ModuleType

import pytest

import tracer.core.probe
import tracer.core.stats


def _path(
    param: str, without: str, monkeypatch: pytest.MonkeyPatch, compiled: tuple[ModuleType, str]
) -> str:
    """Take the compiled part (``module.attribute``) away for the ``without`` param; for the
    other one, insist that it was built."""
    module, attribute = compiled
    if param == without:
        monkeypatch.setattr(module, attribute, None)
    else:
        assert getattr(module, attribute) is not None, f"{module.__name__}.{attribute}: not built"
    return param


@pytest.fixture(params=["kernel", "torch"])
def stats_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the compiled kernel and again with torch's reductions alone (the path of
    an install built without a C compiler). A collector picks its path when it is made."""
    return _path(str(request.param), "torch", monkeypatch, (tracer.core.stats, "_float_stats"))


@pytest.fixture
def torch_stats_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only torch's reductions (the row buffers and chunked sums), as without the kernel."""
    monkeypatch.setattr(tracer.core.stats, "_float_stats", None)


@pytest.fixture(params=["compiled", "python"])
def probe_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the compiled tensor probe and again with the Python one (the path of an
    install built without torch at build time). A trace picks its probe when it is made."""
    return _path(str(request.param), "python", monkeypatch, (tracer.core.probe, "_CompiledProbe"))
