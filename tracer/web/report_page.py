"""The report's document: head (inline CSS and JS under a strict Content-Security-Policy),
the run's header, config and provenance, metric charts, then the other sections."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from pathlib import Path

from tracer import __version__
from tracer.formatting import count, duration, timestamp
from tracer.records import MetricRecord, RunInfo
from tracer.web.report import ReportData
from tracer.web.report_diff import diff_section
from tracer.web.report_findings import findings_section, flagged
from tracer.web.report_flow import flow_section, layers_section
from tracer.web.report_html import LINE_LIMIT, definitions, esc, num, plural, tag
from tracer.web.report_svg import chart, downsample

HERE = Path(__file__).parent
#: Lines of a failed run's error (a traceback) shown, at most.
MAX_ERROR_LINES = 60


@cache
def asset(name: str) -> str:
    """An inline asset shipped beside this module (``report.css``, ``report.js``)."""
    return (HERE / name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def policy(css: str, js: str) -> str:
    """Nothing may load from anywhere; only this page's own style and script may run."""
    return (
        "default-src 'none'; base-uri 'none'; form-action 'none'; "
        f"style-src 'sha256-{_hash(css)}'; script-src 'sha256-{_hash(js)}'"
    )


def _status(run: RunInfo) -> str:
    return tag("span", esc(run.status), f"status status-{esc(run.status)}")


def _header(data: ReportData) -> str:
    run = data.run
    title = tag("h1", esc(run.name, LINE_LIMIT)) + _status(run)
    facts = [
        f"run {run.id}",
        run.pipeline or "no pipeline",
        plural(run.steps or len(data.steps), "traced step"),
        f"started {timestamp(run.started_at)}",
        f"took {duration(run.duration_s)}",
    ]
    if data.diff is not None and data.diff.run_b is not None:
        facts.append(f"compared with run {data.diff.run_b.id} ({data.diff.run_b.name})")
    line = " · ".join(esc(f) for f in facts)
    kicker = tag("p", "layer-tracer report", "kicker")
    return tag("header", kicker + tag("div", title, "title") + tag("p", line, "muted"))


def _nav(data: ReportData) -> str:
    links = [("diff", "Diff")] if data.diff is not None else []
    links += [("findings", "Findings")] if data.checks else []
    links += [("run", "Run"), ("flow", "Flow")]
    links += [("layers", "Layers")] if data.flow else []
    return tag("nav", " ".join(tag("a", text, href=f"#{anchor}") for anchor, text in links))


def _config(run: RunInfo) -> str:
    if not run.config:
        return tag("p", "No config recorded.", "muted")
    pairs = [(esc(k), tag("code", esc(repr(v), LINE_LIMIT))) for k, v in run.config.items()]
    return definitions(pairs)


def _provenance(run: RunInfo) -> str:
    pairs = [
        ("status", esc(run.status)),
        ("pipeline", esc(run.pipeline or "-")),
        ("seed", esc(run.seed if run.seed is not None else "-")),
        ("device", esc(run.device or "-")),
        ("host", esc(run.host or "-")),
        ("pid", esc(run.pid if run.pid is not None else "-")),
        ("rank", esc(f"{run.rank} of {run.world_size}") if run.world_size > 1 else "-"),
        ("job", esc(run.group_id or "-")),
        ("started", esc(timestamp(run.started_at))),
        ("finished", esc(timestamp(run.finished_at))),
        ("python", esc(run.python_version or "-")),
        ("torch", esc(run.torch_version or "-")),
        ("tracer", esc(run.tracer_version or "-")),
        ("git commit", tag("code", esc(run.git_commit)) if run.git_commit else "-"),
        ("command", tag("code", esc(run.command, LINE_LIMIT)) if run.command else "-"),
    ]
    pairs += [(esc(f"tag {k}"), esc(v)) for k, v in run.tags.items()]
    return definitions(pairs)


def _run_section(data: ReportData) -> str:
    run = data.run
    parts = [tag("h2", "Run")]
    if run.error:
        lines = run.error.splitlines()[:MAX_ERROR_LINES]
        parts.append(tag("pre", "\n".join(esc(line, LINE_LIMIT) for line in lines), "error"))
    columns = tag("div", tag("h3", "Config") + _config(run), "col") + tag(
        "div", tag("h3", "Provenance") + _provenance(run), "col"
    )
    parts.append(tag("div", columns, "cols"))
    if run.notes:
        notes = "".join(tag("li", esc(n, LINE_LIMIT)) for n in run.notes)
        parts.append(tag("h3", "Notes") + tag("ul", notes, "notes"))
    parts.append(_metrics(data.metrics, data.limits.metrics, data.limits.metric_points))
    return tag("section", "".join(parts), id_="run")


def _metrics(metrics: tuple[MetricRecord, ...], most: int, points: int) -> str:
    by_name: dict[str, list[tuple[int, float]]] = {}
    for m in metrics:
        by_name.setdefault(m.name, []).append((m.step, m.value))
    if not by_name:
        return tag("h3", "Metrics") + tag("p", "No metrics logged.", "muted")
    cards = []
    for name, series in list(by_name.items())[:most]:
        last = series[-1]
        head = tag("div", esc(name), "metric-name") + tag(
            "div", f'{num(last[1])} <span class="muted">at step {last[0]}</span>', "metric-last"
        )
        cards.append(tag("figure", head + chart(downsample(series, points), name), "metric"))
    text = f"{plural(len(by_name), 'metric')} over {plural(len(metrics), 'logged value')}"
    if len(by_name) > most:
        text += f"; the first {most} are charted"
    return (
        tag("h3", "Metrics")
        + tag("p", esc(text, LINE_LIMIT), "muted")
        + tag("div", "".join(cards), "metrics")
    )


def _footer(data: ReportData) -> str:
    params = data.modules[0].params_total if data.modules else None
    text = (
        f"Written by layer-tracer {__version__} at {timestamp(data.generated_at)}. "
        f"{plural(len(data.modules), 'module')}, {count(params)} parameters. "
        "One file: nothing here is loaded from the network."
    )
    return tag("footer", esc(text, LINE_LIMIT))


def page(data: ReportData) -> str:
    """The report as one HTML document."""
    css, js = asset("report.css"), asset("report.js")
    flags_a = flagged(data.checks[0] if data.checks else None)
    flags_b = flagged(data.checks[1] if len(data.checks) > 1 else None)
    sections = [_header(data), _nav(data)]
    if data.diff is not None:
        sections.append(diff_section(data.diff, data.limits.diff_rows, (flags_a, flags_b)))
    if data.checks:
        sections.append(findings_section(data.checks, data.limits.findings))
    sections.append(_run_section(data))
    sections.append(flow_section(data.flow, data.step, data.steps, flags_a, data.limits.flow_rows))
    sections.append(
        layers_section(
            data.flow, data.history, data.sampled, data.steps, flags_a, data.limits.layers
        )
    )
    sections.append(_footer(data))
    title = esc(f"{data.run.name} · layer-tracer report")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy(css, js)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f'<meta name="generator" content="layer-tracer {esc(__version__)}">'
        f"<title>{title}</title><style>{css}</style></head>\n"
        f"<body><main>{''.join(sections)}</main><script>{js}</script></body></html>\n"
    )
