"""Running rules over a stored run (``check_run``) or over records in memory."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from tracer.checks.findings import SEVERITIES, Finding, Note, Severity, sort_key
from tracer.checks.rules import Rule
from tracer.checks.view import RunRecords
from tracer.records import RunInfo
from tracer.store import Store


@dataclass(frozen=True)
class CheckReport:
    """The findings of one check of one run, ordered by step then flow position.

    ``steps`` are the traced steps that were checked, ``rules`` the names of the rules that ran;
    ``notes`` say what could not be checked (a rule that failed, a statistic not recorded).
    """

    run: RunInfo
    findings: tuple[Finding, ...]
    steps: tuple[int, ...]
    rules: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def counts(self) -> dict[Severity, int]:
        """How many findings of each severity (every severity present, zeros included)."""
        return {s: self.count(s) for s in SEVERITIES}


def check_records(
    records: RunRecords,
    rules: Sequence[Rule],
    limits: Mapping[str, Mapping[str, float]] | None = None,
) -> CheckReport:
    """Run ``rules`` over ``records``; a rule that raises costs only its own findings (noted)."""
    limits = limits or {}
    findings: list[Finding] = []
    notes: list[str] = []
    effective = {rule.name: rule.limits(limits.get(rule.name)) for rule in rules}
    with _no_cycle_collection():
        _run(records, rules, effective, findings, notes)
    findings.sort(key=sort_key)
    return CheckReport(
        run=records.run,
        findings=tuple(findings),
        steps=records.steps,
        rules=tuple(rule.name for rule in rules),
        notes=tuple(dict.fromkeys(notes)),
    )


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while the rules run: reading a long run allocates
    millions of rows and tuples, none of them in a cycle, and the collector walking them again
    and again took a quarter of a check's time. Restored as it was afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _run(
    records: RunRecords,
    rules: Sequence[Rule],
    limits: Mapping[str, Mapping[str, float]],
    findings: list[Finding],
    notes: list[str],
) -> None:
    for rule in rules:
        try:
            found = list(_checked(rule, rule.check(records, limits[rule.name])))
        except Exception as exc:  # a plugin's rule must not take the others down
            notes.append(f"rule {rule.name} failed: {type(exc).__name__}: {exc}")
            continue
        for item in found:
            if isinstance(item, Note):
                notes.append(f"{rule.name}: {item.text}")
            else:
                findings.append(item)


def _checked(rule: Rule, found: Iterable[Finding | Note]) -> Iterable[Finding | Note]:
    for finding in found:
        if isinstance(finding, Note):
            yield finding
            continue
        if not isinstance(finding, Finding):
            raise TypeError(f"yielded {type(finding).__name__}, not a Finding")
        if finding.rule != rule.name:
            raise ValueError(f"yielded a finding of rule {finding.rule!r}")
        yield finding


def load_records(store: Store, run: RunInfo, steps: Iterable[int] | None = None) -> RunRecords:
    """A stored run's records: the given traced steps (all recorded ones when ``None``), read
    as the rules ask for them (:class:`tracer.checks.stored.StoredRecords`)."""
    from tracer.checks.stored import StoredRecords

    return StoredRecords.read(store, run, steps)


def check_run(
    store: Store,
    run: RunInfo,
    rules: Sequence[Rule],
    *,
    steps: Iterable[int] | None = None,
    limits: Mapping[str, Mapping[str, float]] | None = None,
) -> CheckReport:
    """Check a stored run (also one still being written: the steps committed so far)."""
    return check_records(load_records(store, run, steps), rules, limits)
