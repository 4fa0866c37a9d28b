"""The register_checks hook: a plugin's rule runs in tracer check beside the built-in ones."""

from __future__ import annotations

from pathlib import Path

from tracer.checks import RuleSet, RunRecords, check_records
from tracer.plugins.manager import PluginManager
from tracer.records import CallRecord, RunInfo, TensorRecord

SOURCE = """
from tracer import hookimpl
from tracer.checks import Finding, Rule, Threshold

def wide(records, limits):
    for step in records.steps:
        for call in records.flow(step):
            for t in call.outputs:
                if t.shape and t.shape[-1] > limits["width"]:
                    yield Finding("too-wide", "warning", call.module, call.call_index, call.kind,
                                  t.slot, t.role, step, "too wide", seq=call.seq)

@hookimpl
def register_checks(register):
    register(Rule("too-wide", "warning", "outputs wider than width", wide,
                  (Threshold("width", 8.0, "widest output allowed", min=1),)))
"""


def _records() -> RunRecords:
    out = TensorRecord("0", (2, 16), "float32", "cpu", role="output")
    call = CallRecord(step=0, seq=0, module="fc", type="Linear", outputs=(out,))
    return RunRecords(RunInfo(1, "r", None, "completed"), {0: [call]})


def test_hook_register_checks_adds_a_rule_that_runs_with_its_thresholds(
    write_plugin, tmp_path: Path
) -> None:
    manager = PluginManager.load([write_plugin("wide_plugin", SOURCE)], entry_points=False)
    rules = RuleSet(manager.checks().values())
    assert rules["too-wide"].plugin == "wide_plugin"
    report = check_records(_records(), rules.select(["too-wide"]))
    assert [(f.rule, f.module, f.step) for f in report.findings] == [("too-wide", "fc", 0)]
    relaxed = check_records(_records(), rules.select(["too-wide"]), {"too-wide": {"width": 32}})
    assert relaxed.findings == ()
