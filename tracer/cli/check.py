"""``tracer check``: what is wrong with a recorded run, at which layer and step."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from tracer.cli.base import common, format_option, load_plugins, open_store, out, plugin_option
from tracer.cli.base import print_json as emit_json
from tracer.cli.render import LINE_LIMIT, lit

if TYPE_CHECKING:
    from tracer.checks import CheckReport, Finding, Rule

#: Exit status of ``--exit-code`` when a finding fails the check.
FOUND = 1
#: Exit status for bad input: an unknown run, rule or step, a bad threshold.
BAD_INPUT = 2

_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class BadInput(click.ClickException):
    """Input ``tracer check`` cannot work with: one line, exit status 2."""

    exit_code = BAD_INPUT


def parse_thresholds(
    items: Sequence[str], rules: Mapping[str, Rule]
) -> dict[str, dict[str, float]]:
    """``RULE.NAME=VALUE`` strings as limits by rule, each value checked by its Threshold."""
    limits: dict[str, dict[str, float]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        rule_name, dot, name = target.strip().partition(".")
        if not sep or not dot or not rule_name or not name:
            example = "saturation.fraction=0.9"
            raise BadInput(f"--threshold {item!r}: expected RULE.NAME=VALUE ({example})")
        if rule_name not in rules:
            raise BadInput(f"--threshold {item!r}: unknown rule {rule_name!r}")
        try:
            value = float(text)
        except ValueError:
            raise BadInput(f"--threshold {item!r}: {text.strip()!r} is not a number") from None
        limits.setdefault(rule_name, {})[name] = value
    for rule_name, values in limits.items():
        try:
            rules[rule_name].limits(values)
        except ValueError as exc:
            raise BadInput(f"--threshold: {exc}") from None
    return limits


def findings_table(findings: Sequence[Finding]) -> Table:
    """Findings ordered as given (step, then flow position), one row each."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("severity", "rule", "layer", "slot (role)", "steps", "message"):
        table.add_column(column, overflow="fold")
    for f in findings:
        steps = str(f.step) if f.until is None else f"{f.step}-{f.until}"
        table.add_row(
            Text(f.severity, style=_STYLES[f.severity]),
            lit(f.rule),
            lit(f.layer),
            Text.assemble(lit(f.slot), f" ({f.role})"),
            steps,
            lit(f.message, limit=LINE_LIMIT),
        )
    return table


def report_dict(report: CheckReport) -> dict[str, Any]:
    """The report as ``tracer check --format json`` prints it."""
    return {
        "run": report.run.id,
        "steps": list(report.steps),
        "rules": list(report.rules),
        "counts": report.counts,
        "findings": [f.to_json() for f in report.findings],
        "notes": list(report.notes),
    }


def rules_dict(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """The rules as ``tracer check --list --format json`` prints them."""
    return [
        {
            "name": r.name,
            "severity": r.severity,
            "summary": r.summary,
            "plugin": r.plugin,
            "source": r.source,
            "thresholds": [
                {"name": t.name, "default": t.default, "min": t.min, "max": t.max, "help": t.help}
                for t in r.thresholds
            ],
        }
        for r in rules
    ]


def _print_rules(rules: Sequence[Rule]) -> None:
    for r in rules:
        head = Text.assemble(lit(r.name, "bold"), "  ", Text(r.severity, _STYLES[r.severity]))
        head.append_text(lit(f"  (plugin: {r.plugin})" if r.plugin else "", "dim"))
        out.print(head)
        out.print(Text.assemble("  ", lit(r.summary, limit=LINE_LIMIT)))
        for t in r.thresholds:
            out.print(
                Text.assemble(
                    "  --threshold ",
                    lit(f"{r.name}.{t.name}={t.default:g}", "bold"),
                    "  ",
                    lit(t.help, limit=LINE_LIMIT),
                )
            )
        if r.source:
            out.print(Text.assemble("  source: ", lit(r.source, "dim", limit=None)))
        out.print()


def _print_report(report: CheckReport) -> None:
    from tracer.checks.findings import counts_text

    run = report.run
    steps = report.steps
    shown = f"step {steps[0]}" if len(steps) == 1 else f"{len(steps)} traced steps"
    header = Text(f"run {run.id}", style="bold")
    header.append_text(lit(f" {run.name} · {run.status} · {shown} checked", limit=LINE_LIMIT))
    out.print(header)
    if report.findings:
        out.print(findings_table(report.findings))
    else:
        out.print("no findings")
    out.print(counts_text(report.counts))
    for note in report.notes:
        out.print(Text.assemble("note: ", lit(note, limit=LINE_LIMIT)), style="dim")


def _chosen_steps(store: Any, run: Any, wanted: Sequence[int]) -> list[int] | None:
    """The steps to check (None: every recorded one); a step not recorded is bad input."""
    if not wanted:
        return None
    recorded = set(store.steps(run.id))
    for step in wanted:
        if step not in recorded:
            traced = sorted(recorded)
            text = ", ".join(map(str, traced[:20])) + (" ..." if len(traced) > 20 else "")
            raise BadInput(f"run {run.id} has no traced step {step} (traced: {text or 'none'})")
    return list(wanted)


@click.command()
@click.argument("ref", metavar="RUN", required=False)
@click.option(
    "--rule", "rule_names", multiple=True, metavar="NAME", help="Only this rule (repeatable)."
)
@click.option("--step", "steps", type=int, multiple=True, help="Only this traced step (repeatable)")
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="RULE.NAME=VALUE",
    help="Change a rule's threshold (repeatable); --list shows them.",
)
@click.option("--rank", type=click.IntRange(min=0), help="That rank of RUN's distributed job.")
@click.option("--exit-code", is_flag=True, help="Exit with 1 when there is an error (a CI gate).")
@click.option("--strict", is_flag=True, help="With --exit-code: a warning fails too.")
@click.option(
    "--list", "--rules", "list_rules", is_flag=True, help="Describe the rules and thresholds."
)
@plugin_option
@format_option
@common
def check(
    ref: str | None,
    rule_names: tuple[str, ...],
    steps: tuple[int, ...],
    thresholds: tuple[str, ...],
    rank: int | None,
    exit_code: bool,
    strict: bool,
    list_rules: bool,
    plugin_files: tuple[Path, ...],
    fmt: str,
    db: str | None,
) -> None:
    """Check RUN (an id, a name or `latest`) for NaN, saturation, dead units, silent downcasts,
    device hops, exploding or vanishing gradients, stuck layers and drift."""
    from tracer.checks import RuleSet, check_run
    from tracer.store.errors import RunNotFound

    rules = RuleSet(load_plugins(plugin_files).checks().values())
    try:
        selected = rules.select(rule_names)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if list_rules:
        emit_json(rules_dict(selected)) if fmt == "json" else _print_rules(selected)
        return
    if ref is None:
        raise BadInput("missing RUN (an id, a name or latest); --list describes the rules")
    limits = parse_thresholds(thresholds, rules)
    store = open_store(db)
    try:
        run = store.run_of_rank(ref, rank)
    except RunNotFound as exc:
        raise BadInput(str(exc)) from None
    report = check_run(store, run, selected, steps=_chosen_steps(store, run, steps), limits=limits)
    if fmt == "json":
        emit_json(report_dict(report))
    else:
        _print_report(report)
    failed = report.count("error") or (strict and report.count("warning"))
    if exit_code and failed:
        sys.exit(FOUND)
