"""A rule: a plain function over a run's records that yields findings, and its thresholds."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from tracer.checks.findings import SEVERITIES, Finding, Note, Severity

if TYPE_CHECKING:
    from tracer.checks.view import RunRecords

#: What a rule's name may be: lower-case words joined by hyphens (``dead-units``).
RULE_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")

CheckFunction = Callable[["RunRecords", Mapping[str, float]], Iterable[Finding | Note]]


@dataclass(frozen=True)
class Threshold:
    """One configurable number of a rule: its name, default, allowed range and meaning."""

    name: str
    default: float
    help: str
    min: float = -math.inf
    max: float = math.inf

    def check(self, value: float) -> float:
        """``value`` when it is a number in range; ValueError naming the range otherwise."""
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"{self.name} must be a number, not {value!r}")
        if not self.min <= value <= self.max:
            raise ValueError(f"{self.name} must be between {self.min:g} and {self.max:g}")
        return float(value)


@dataclass(frozen=True)
class Rule:
    """A check: ``check(records, limits)`` yields findings for one run.

    ``limits`` maps each of ``thresholds``' names to the value in effect (the default unless the
    user set it). ``severity`` is what the rule's findings carry; ``summary`` one line saying what
    it finds, ``source`` where its thresholds come from. A rule reads records only: no torch.
    A rule may yield a :class:`~tracer.checks.findings.Note` for what it could not check.
    ``plugin`` names the plugin that registered it (set by the plugin manager).
    """

    name: str
    severity: Severity
    summary: str
    check: CheckFunction
    thresholds: tuple[Threshold, ...] = ()
    source: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not RULE_NAME.match(self.name):
            raise ValueError(
                f"a rule's name is lower-case words joined by hyphens, not {self.name!r}"
            )
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity must be one of {SEVERITIES}")
        if not callable(self.check):
            raise TypeError(f"rule {self.name}: check must be callable")
        names = [t.name for t in self.thresholds]
        if len(set(names)) != len(names):
            raise ValueError(f"rule {self.name}: two thresholds share a name")

    def limits(self, overrides: Mapping[str, float] | None = None) -> Mapping[str, float]:
        """The thresholds in effect: the defaults, with ``overrides`` (checked) applied."""
        values = {t.name: t.default for t in self.thresholds}
        known = {t.name: t for t in self.thresholds}
        for name, value in (overrides or {}).items():
            if name not in known:
                choices = ", ".join(sorted(known)) or "none"
                raise ValueError(f"rule {self.name} has no threshold {name!r} (it has: {choices})")
            values[name] = known[name].check(value)
        return MappingProxyType(values)


class RuleSet(Mapping[str, Rule]):
    """Rules by name, in the order they were added; a second rule of one name is refused."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules: dict[str, Rule] = {}
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule) -> None:
        if not isinstance(rule, Rule):
            raise TypeError(f"expected a Rule, got {type(rule).__name__}")
        if rule.name in self._rules:
            raise ValueError(f"two rules are named {rule.name!r}")
        self._rules[rule.name] = rule

    def __getitem__(self, name: str) -> Rule:
        return self._rules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def select(self, names: Iterable[str] = ()) -> list[Rule]:
        """The named rules (all when none are named); an unknown name is a ValueError."""
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in self._rules]
        if unknown:
            known = ", ".join(self._rules) or "none"
            raise ValueError(f"unknown rule {unknown[0]!r} (rules: {known})")
        return [self._rules[n] for n in wanted] if wanted else list(self._rules.values())
