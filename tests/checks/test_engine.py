"""Reading a run for the checks (Store.flows), the engine, and rules over records in memory."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.checks.conftest import batch, train
from tracer.checks import Finding, Rule, RunRecords, check_records, check_run
from tracer.checks.builtin import BUILTIN_RULES
from tracer.checks.findings import Note, counts_text
from tracer.checks.live import StepChecker
from tracer.records import CallRecord, ModuleRecord, ParamRecord, RunInfo, TensorRecord
from tracer.store import open_store

RUN = RunInfo(1, "r", None, "completed")


def test_store_flows_reads_what_flow_reads_step_by_step(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))

    def loss(m: nn.Module, step: int) -> torch.Tensor:
        x = batch(step)
        if step == 1:
            x[0, 0] = math.nan  # NaN, ±Inf and absent statistics take the general path
            x[1, 1] = math.inf
        return m(x).mean()

    rec = train(model, db, loss, steps=3, grads=True, ops=True)
    every = rec.store.flows(rec.run_id)
    assert list(every) == [0, 1, 2]
    for step in every:
        assert every[step] == rec.store.flow(rec.run_id, step)
    assert rec.store.flows(rec.run_id, [2, 0]) == {0: every[0], 2: every[2]}
    assert rec.store.flows(rec.run_id, [7]) == {} and rec.store.flows(rec.run_id, []) == {}


def test_check_run_of_a_run_still_being_written_sees_the_steps_so_far(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 1))
    with tracer_trace(model, db) as t, open_store(db) as store:
        for step in range(3):
            model(batch(step)).mean().backward()
            t.step()
            run = store.list_runs()[0]
            assert run.status == "running"
            assert check_run(store, run, BUILTIN_RULES).steps == tuple(range(step + 1))


def tracer_trace(model: nn.Module, db: Path):  # type: ignore[no-untyped-def]
    import tracer

    return tracer.trace(model, store=db, name="live")


def test_step_checker_reports_the_first_error_once(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 1))

    def loss(m: nn.Module, step: int) -> torch.Tensor:
        if step == 1:
            with torch.no_grad():
                m[0].weight[0, 0] = math.inf  # the first layer makes Inf from step 1 on
        return m(batch(step)).mean()

    rec = train(model, db, loss)
    checker = StepChecker(rec.store, rec.store.get_run(rec.run_id), BUILTIN_RULES)
    assert checker.new_error(0) is None
    first = checker.new_error(1)
    assert first is not None and (first.rule, first.step) == ("nan", 1)
    assert checker.new_error(2) is None  # said once
    assert checker.check_step(99) == []
    assert checker.report().count("error") == 1


def _explode(records: RunRecords, limits: object) -> list[Finding]:
    raise RuntimeError("broken rule")


def _noted(records: RunRecords, limits: object):  # type: ignore[no-untyped-def]
    yield Note("cannot tell")
    yield Note("cannot tell")


def test_engine_a_failing_rule_costs_only_its_own_findings() -> None:
    rules = [Rule("broken", "error", "raises", _explode), Rule("noted", "info", "notes", _noted)]
    report = check_records(RunRecords(RUN, {}), [*rules, *BUILTIN_RULES[:1]])
    assert report.notes == ("rule broken failed: RuntimeError: broken rule", "noted: cannot tell")
    assert report.rules[-1] == "nan" and report.findings == ()


def test_engine_pauses_the_cycle_collector_during_a_check_and_restores_it() -> None:
    seen: list[bool] = []

    def watch(records: RunRecords, limits: object):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        raise RuntimeError("a failing rule restores it too")
        yield  # pragma: no cover

    rules = [Rule("watch", "info", "s", watch)]
    assert gc.isenabled()
    check_records(RunRecords(RUN, {}), rules)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        check_records(RunRecords(RUN, {}), rules)
        assert not gc.isenabled()  # a caller that had paused it keeps it paused
    finally:
        gc.enable()


def test_engine_refuses_a_finding_of_another_rule() -> None:
    def wrong(records: RunRecords, limits: object):  # type: ignore[no-untyped-def]
        yield Finding("other", "info", "", 0, "module", "0", "output", 0, "x")

    report = check_records(RunRecords(RUN, {}), [Rule("mine", "info", "s", wrong)])
    assert report.notes == ("rule mine failed: ValueError: yielded a finding of rule 'other'",)


def test_counts_text_says_each_severity() -> None:
    assert counts_text({"error": 1, "warning": 2, "info": 3}) == "1 error, 2 warnings, 3 info"
    assert counts_text({}) == "0 errors, 0 warnings, 0 info"


def _t(role: str, device: str = "cpu", dtype: str = "float32") -> TensorRecord:
    stats = {"numel": 4.0, "mean": 0.1, "std": 1.0, "min": -1.0, "max": 1.0}
    return TensorRecord("0", (2, 2), dtype, device, role=role, stats=stats)  # type: ignore[arg-type]


def _call(
    step: int, seq: int, path: str, kind: str, given: TensorRecord, made: TensorRecord
) -> CallRecord:
    return CallRecord(step, seq, path, kind, inputs=(given,), outputs=(made,), depth=min(seq, 1))


def _flow(step: int, hop: bool) -> list[CallRecord]:
    """A root and three leaves on cuda:0; with ``hop`` the middle one's output lands on cpu."""
    gpu, middle = "cuda:0", "cpu" if hop else "cuda:0"
    return [
        _call(step, 0, "", "Net", _t("input", gpu), _t("output", middle)),
        _call(step, 1, "a", "Linear", _t("input", gpu), _t("output", gpu)),
        _call(step, 2, "b", "Mover", _t("input", gpu), _t("output", middle)),
        _call(step, 3, "c", "Linear", _t("input", middle), _t("output", middle)),
    ]


def test_device_hop_fires_inside_the_layer_that_moved_the_tensor() -> None:
    flows = {0: _flow(0, hop=False), 1: _flow(1, hop=True), 2: _flow(2, hop=True)}
    report = check_records(RunRecords(RUN, flows), BUILTIN_RULES)
    found = [(f.rule, f.module, f.role, f.step, f.until) for f in report.findings]
    assert found == [("device-hop", "b", "output", 1, 2)]


def test_dtype_change_is_quiet_under_autocast() -> None:
    """A Linear with float32 weights that returns bfloat16 runs under autocast: intended."""
    params = (ParamRecord("weight", (2, 2), "float32", 4, True),)
    fc = ModuleRecord("fc", "Linear", "", 1, parameters=params)
    modules = [ModuleRecord("", "Net", None, 0), fc]
    low = "bfloat16"
    flow = [
        _call(0, 0, "", "Net", _t("input"), _t("output", dtype=low)),
        _call(0, 1, "fc", "Linear", _t("input"), _t("output", dtype=low)),
        _call(0, 2, "act", "ReLU", _t("input", dtype=low), _t("output", dtype=low)),
    ]
    report = check_records(RunRecords(RUN, {0: flow}, modules), BUILTIN_RULES)
    assert [f.rule for f in report.findings] == []
    without = check_records(RunRecords(RUN, {0: flow}), BUILTIN_RULES)  # no parameters known
    assert [(f.rule, f.module) for f in without.findings] == [("dtype-change", "fc")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_hop_fires_on_a_real_model_that_copies_to_the_cpu(db: Path) -> None:
    class Hopper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(8, 8)
            self.fc2 = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.fc1(x).cpu())

    model = Hopper().cuda()
    model.fc2.cpu()  # the second layer left on the CPU: its input is copied there
    report = train(model, db, lambda m, step: m(batch(step).cuda()).mean()).check()
    found = [(f.rule, f.module, f.role) for f in report.findings if f.severity != "info"]
    assert found == [("device-hop", "fc2", "input")]
