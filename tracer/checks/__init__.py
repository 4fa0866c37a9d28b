"""Checks: rules over a run's stored records that say what is wrong, at which layer and step.

Torch-free: a check reads records from the store (also while a run is still being written), so
it runs on any machine that can open the database. Rules come from plugins through the
``register_checks`` hook; the built-in ones (:mod:`tracer.checks.builtin`) use the same hook.
"""

from __future__ import annotations

from tracer.checks.engine import CheckReport, check_records, check_run, load_records
from tracer.checks.findings import SEVERITIES, Finding, Severity
from tracer.checks.rules import Rule, RuleSet, Threshold
from tracer.checks.view import LayerHistory, LayerKey, RunRecords

__all__ = [
    "SEVERITIES",
    "CheckReport",
    "Finding",
    "LayerHistory",
    "LayerKey",
    "Rule",
    "RuleSet",
    "RunRecords",
    "Severity",
    "Threshold",
    "check_records",
    "check_run",
    "load_records",
]
