"""Fixtures of the core tests: the two statistics paths, the two tensor probes."""

from __future__ import annotations

import pytest

import tracer.probe
import tracer.stats


@pytest.fixture(params=["kernel", "torch"])
def stats_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the compiled kernel and again with torch's reductions alone (the path of
    an install built without a C compiler). A collector picks its path when it is made."""
    if request.param == "torch":
        monkeypatch.setattr(tracer.stats, "_float_stats", None)
    else:
        assert tracer.stats.kernel_available(), "tracer._speedups was not built"
    return str(request.param)


@pytest.fixture
def torch_stats_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only torch's reductions (the row buffers and chunked sums), as without the kernel."""
    monkeypatch.setattr(tracer.stats, "_float_stats", None)


@pytest.fixture(params=["compiled", "python"])
def probe_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the compiled tensor probe and again with the Python one (the path of an
    install built without torch at build time). A trace picks its probe when it is made."""
    if request.param == "python":
        monkeypatch.setattr(tracer.probe, "_CompiledProbe", None)
    else:
        assert tracer.probe.probe_available(), "tracer._probe was not built"
    return str(request.param)
