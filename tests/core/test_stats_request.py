"""The compiled statistics request (``tracer.core._probe.StatsRequest``) of the collector.

It does the common tensor's whole request in one call on the collector's own tables; these
tests check that it takes the tensors it should (counted by how often the Python request is
asked), that it dedups exactly as the Python request does (identity, version, views, freed
tensors whose id or address is reused), and that every statistic is the same as the Python
request's, bit for bit.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tracer.core import collector as collector_module
from tracer.core import probe as probe_module
from tracer.core.collector import StatsCollector
from tracer.core.torch_compat import DisableTorchFunction

compiled = pytest.mark.needs_extension("probe", "speedups")


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The tensors the Python request is asked about (by collectors made after this fixture)."""
    seen: list[torch.Tensor] = []
    python_request = StatsCollector._request

    def counting(self: StatsCollector, t: torch.Tensor) -> int:
        seen.append(t)
        return python_request(self, t)

    monkeypatch.setattr(StatsCollector, "_request", counting)
    return seen


def _python_collector(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any] | None = None
) -> StatsCollector:
    """A collector without the compiled request (the Python request with the compiled kernel
    call, as before the compiled request existed)."""
    with monkeypatch.context() as m:
        m.setattr(collector_module, "compiled_stats_request", lambda: None)
        return StatsCollector(extra)


def _texts(collector: StatsCollector, tensors: list[torch.Tensor]) -> list[str]:
    indices = [collector.request(t) for t in tensors]
    stats = collector.flush()
    # The indices too: the same dedup decisions in the same order. NaN compares equal as text.
    return [f"{i}: {stats.get(i)!r}" for i in indices]


def _cases() -> list[torch.Tensor]:
    torch.manual_seed(7)
    base = torch.randn(32, 64)
    param = nn.Parameter(torch.randn(16, 8))
    special = torch.randn(300)
    special[3], special[10], special[20] = float("nan"), float("inf"), -float("inf")
    with torch.inference_mode():
        inference = torch.randn(5, 5)
    cases = [
        base,
        base,  # seen: the same index
        base.view(-1),  # the whole of its base: the base's key
        base.view(64, 32),
        base[2:5],  # part of it: its own key
        base[2:5].view(-1),  # the same part through another view object: the same key
        base.t(),  # read as it lies; not contiguous: keyed by its own identity
        base[:, :5],  # gaps: the Python way
        torch.randn(7, dtype=torch.float64),
        torch.randn(40, 30, dtype=torch.float64).t(),
        torch.tensor(2.5),
        special,
        torch.full((1000,), float("nan")),
        torch.full((100,), 1e4) + torch.randn(100) * 1e-3,  # the spread must not cancel
        torch.randn(3 * (1 << 20) + 5),  # big: split over torch's threads
        torch.randn(12, requires_grad=True) * 2,  # a non-leaf with a graph
        param,  # a subclass: the Python way
        param.view(-1),  # a plain view of a Parameter: the Parameter's key
        param[3:],
        torch.randn(8).half(),
        torch.arange(6),
        torch.randn(4)._neg_view(),
        torch.empty(0),
        inference,  # no version counter: the Python way, never deduplicated
        inference,
        torch.zeros(5, 5).expand(2, 5, 5),
    ]
    base.add_(1)  # a new version: everything keyed by base is requested anew below
    cases += [base, base.view(-1), base[2:5]]
    return cases


@compiled
def test_the_compiled_request_is_the_collector_s_request() -> None:
    collector = StatsCollector()
    assert probe_module.compiled_stats_request() is not None
    assert type(collector.request).__name__ == "builtin_function_or_method"


@compiled
@pytest.mark.parametrize("extra", [False, True])
def test_statistics_and_indices_are_the_python_request_s(
    extra: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    extras = {"first": lambda t: float(t.reshape(-1)[0])} if extra else None
    want = _texts(_python_collector(monkeypatch, extras), _cases())
    got = _texts(StatsCollector(extras), _cases())
    assert got == want


@compiled
def test_plain_float_tensors_never_reach_the_python_request(asked: list[torch.Tensor]) -> None:
    collector = StatsCollector()
    x = torch.randn(32, 64)
    first = collector.request(x)
    assert collector.request(x) == first  # the same tensor at the same version
    assert collector.request(x.view(-1)) == first  # the same memory, all of it
    part = collector.request(x[4:9])
    assert part != first
    assert collector.request(x[4:9].view(-1)) == part  # another view of the same part
    transposed = collector.request(x.t())
    assert transposed not in (first, part)
    wide = torch.randn(9, 5, dtype=torch.float64)
    doubled = collector.request(wide)
    x.mul_(2)  # in place: a new version, a new index
    again = collector.request(x)
    assert again not in (first, part, transposed, doubled)
    assert collector.request(x) == again
    assert asked == []
    stats = collector.flush()
    assert stats.get(again)["mean"] == pytest.approx(2 * stats.get(first)["mean"], rel=1e-6)
    assert stats.get(again)["max"] == 2 * stats.get(first)["max"]
    assert stats.get(first) == stats.get(transposed)  # the same elements, in another order
    assert stats.get(doubled)["mean"] == pytest.approx(wide.mean().item(), rel=1e-12)
    assert stats.get(part)["numel"] == 5 * 64


@compiled
def test_uncommon_tensors_go_to_the_python_request(asked: list[torch.Tensor]) -> None:
    collector = StatsCollector()
    param = nn.Parameter(torch.randn(4, 4))
    with torch.inference_mode():
        inference = torch.randn(3)
    gaps = torch.randn(6, 6)[:, :2]
    uncommon = [inference, gaps, torch.randn(5).half(), torch.arange(12).view(3, 4).t()]
    uncommon += [torch.randn(4)._neg_view(), torch.randn(3, device="meta")]
    uncommon += [torch.arange(3)._neg_view(), torch.empty(0, device="meta")]
    for t in uncommon:
        collector.request(t)
    assert [id(t) for t in asked] == [id(t) for t in uncommon]
    # Empty tensors, contiguous integer or bool ones and Parameters are the compiled request's
    # own; a plain view of the Parameter is taken too, and shares the Parameter's index.
    for t in (torch.arange(3), torch.empty(0), torch.ones(2, 2, dtype=torch.bool)):
        collector.request(t)
    index = collector.request(param)
    assert collector.request(param.view(-1)) == index
    assert len(asked) == len(uncommon)
    # A subclass of Parameter may answer its own way.
    lazy = nn.UninitializedParameter()
    collector.request(lazy)
    assert asked[-1] is lazy


@compiled
def test_a_torch_function_mode_sends_tensors_the_python_way(asked: list[torch.Tensor]) -> None:
    class Mode(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            return func(*args, **(kwargs or {}))

    collector = StatsCollector()
    x = torch.randn(10)
    with Mode():
        collector.request(x)
        assert asked == [x]  # its getters may answer its own way
        assert DisableTorchFunction is not None
        with DisableTorchFunction():  # the op layer's bookkeeping: no mode to consult
            collector.request(torch.randn(10))
    assert len(asked) == 1


@compiled
def test_extra_statistics_send_every_tensor_the_python_way(asked: list[torch.Tensor]) -> None:
    collector = StatsCollector({"first": lambda t: float(t.reshape(-1)[0])})
    x = torch.arange(1.0, 7.0)
    index = collector.request(x)
    assert asked == [x]
    assert collector.flush().get(index)["first"] == 1.0


def _reused(keep: list[torch.Tensor], old_id: int, old_address: int) -> Iterator[torch.Tensor]:
    """New tensors made until one has the freed tensor's id or address (kept alive meanwhile)."""
    for value in range(1, 2000):
        t = torch.full((32, 64), float(value))
        if id(t) == old_id or t.data_ptr() == old_address:
            yield t
            return
        keep.append(t)  # alive: the next one gets other memory


@compiled
def test_a_freed_tensor_s_id_or_address_reused_is_not_a_hit(asked: list[torch.Tensor]) -> None:
    collector = StatsCollector()
    found = 0
    for _ in range(20):
        x = torch.zeros(32, 64)
        old = collector.request(x)
        old_id, old_address = id(x), x.data_ptr()
        del x
        keep: list[torch.Tensor] = []
        for t in _reused(keep, old_id, old_address):
            found += 1
            new = collector.request(t)
            assert new != old
            stats = collector.flush()
            assert stats.get(old)["mean"] == 0.0
            assert stats.get(new)["mean"] == t[0, 0].item() != 0.0
    assert found, "no freed tensor's id or address was reused in 20 attempts"
    assert asked == []


@compiled
def test_views_of_a_freed_base_are_not_hits() -> None:
    collector = StatsCollector()
    indices = []
    for value in range(100):  # each base is freed with its view; ids get reused
        view = torch.full((16, 4), float(value))[4:8]
        indices.append((value, collector.request(view)))
    stats = collector.flush()
    assert all(stats.get(index)["mean"] == value for value, index in indices)


@compiled
def test_the_tables_are_the_collector_s_and_start_empty_each_step() -> None:
    collector = StatsCollector()
    x = torch.randn(6)
    assert collector.request(x) == 0
    stats = collector.flush()
    assert collector.request(x) == 0  # a new step: no index carried over
    assert collector.request(torch.randn(3).half()) == 1  # the Python way, the same tables
    assert collector.request(torch.randn(2)) == 2
    later = collector.flush()
    assert stats.get(0) == later.get(0)


@compiled
def test_a_collector_with_the_compiled_request_is_freed() -> None:
    collector = StatsCollector()
    collector.request(torch.randn(4))
    ref = weakref.ref(collector)
    del collector
    gc.collect()
    assert ref() is None


def test_without_the_probe_the_request_is_the_python_one(probe_path: str, stats_path: str) -> None:
    collector = StatsCollector()
    fast = probe_path == "compiled" and stats_path == "kernel"
    assert (type(collector.request).__name__ == "builtin_function_or_method") == fast
    x = torch.randn(8, 8)
    first = collector.request(x)
    assert collector.request(x) == first
    assert collector.request(x.view(-1)) == first
    x.add_(1)
    second = collector.request(x)
    assert second != first
    stats = collector.flush()
    assert stats.get(second)["mean"] == pytest.approx(stats.get(first)["mean"] + 1, rel=1e-5)


@compiled
def test_the_request_holds_no_tensor() -> None:
    collector = StatsCollector()
    base = torch.randn(8, 8)
    views = [base.view(-1), base[2:4], base.t(), base[2:4].view(-1)]
    for t in [base, *views, torch.randn(3, dtype=torch.float64)]:
        collector.request(t)
    refs = [weakref.ref(t) for t in [base, *views]]
    del base, views, t
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)
    stats = collector.flush()
    assert stats.get(0)["numel"] == 64


@compiled
@pytest.mark.parametrize("numel", [5, 3 * (1 << 20) + 5])
def test_a_parameter_has_the_statistics_of_a_plain_tensor_of_its_values(
    numel: int, asked: list[torch.Tensor]
) -> None:
    # A Parameter's memory is its values: the compiled request reads it as it reads a plain
    # tensor (a big one split over torch's threads the same way), and never asks Python.
    torch.manual_seed(2)
    values = torch.randn(numel)
    param = nn.Parameter(values.clone())
    collector = StatsCollector()
    plain, own = collector.request(values), collector.request(param)
    stats = collector.flush()
    assert asked == []
    assert stats.get(plain) == stats.get(own)
