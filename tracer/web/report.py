"""``tracer report``: one self-contained HTML file of a run (and its diff against another).

:func:`gather` reads what the page shows from the store (bounded: see :class:`Limits`),
:func:`render` turns it into one HTML document with inline CSS, JS and SVG and nothing to
fetch, and :func:`atomic_output` writes it so that a failure leaves no partial file. The
comparison is :func:`tracer.store.diff.diff_runs`, the one ``tracer diff`` prints; findings
are :func:`tracer.checks.check_run`'s. Torch-free, like everything in ``tracer.web``.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tracer.checks import CheckReport, LayerKey, Rule, check_run
from tracer.records import CallRecord, MetricRecord, ModuleRecord, RunInfo
from tracer.store import Store, StoreError
from tracer.store.diff import FlowDiff, diff_runs


class ReportError(StoreError):
    """The report cannot be made as asked (a step the run did not trace)."""


@dataclass(frozen=True)
class Limits:
    """What keeps a report light however long the run: a 1,000-step, 500-layer run gets the
    same bounded page as a small one, and the page says what it left out."""

    flow_rows: int = 600  # calls of the shown step in the flow table
    layers: int = 100  # layers with sparklines (flagged ones first, then in flow order)
    points: int = 40  # traced steps sampled for the sparklines (first and last included)
    metric_points: int = 240  # points per metric chart (lowest and highest per bucket)
    metrics: int = 12  # metric charts
    diff_rows: int = 600  # aligned rows of the diff (changed rows first in the budget)
    findings: int = 300  # findings listed per run


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows, read from the store once."""

    run: RunInfo
    steps: tuple[int, ...]
    step: int | None  # the step of the flow table (None: nothing traced)
    flow: tuple[CallRecord, ...]
    modules: tuple[ModuleRecord, ...]
    metrics: tuple[MetricRecord, ...]
    sampled: tuple[int, ...]  # the steps the sparklines read
    history: Mapping[LayerKey, tuple[CallRecord, ...]]  # each layer's calls at those steps
    diff: FlowDiff | None = None
    checks: tuple[CheckReport, ...] = ()  # run A's, then run B's (with --checks)
    limits: Limits = field(default_factory=Limits)
    generated_at: float = field(default_factory=time.time)


def sample_steps(steps: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` of ``steps``, evenly spaced, the first and the last included."""
    if len(steps) <= limit:
        return list(steps)
    if limit <= 1:
        return list(steps[:limit])
    picked = {round(i * (len(steps) - 1) / (limit - 1)) for i in range(limit)}
    return [steps[i] for i in sorted(picked)]


def _history(
    store: Store,
    run: RunInfo,
    sampled: Sequence[int],
    shown: int | None,
    flow: Sequence[CallRecord],
) -> dict[LayerKey, tuple[CallRecord, ...]]:
    """Each layer's call at every sampled step (one flow read per step)."""
    read = {s: store.flow(run.id, s) for s in sampled if s != shown}
    found: dict[LayerKey, list[CallRecord]] = {}
    for step in sampled:
        calls = flow if step == shown else read.get(step, ())
        for call in calls:
            found.setdefault(LayerKey.of(call), []).append(call)
    return {key: tuple(calls) for key, calls in found.items()}


def _missing_step(run: RunInfo, step: int, steps: Sequence[int]) -> ReportError:
    shown = ", ".join(map(str, steps[:20])) + (" ..." if len(steps) > 20 else "")
    return ReportError(
        f"run {run.id} ({run.name}) has no traced step {step} (traced: {shown or 'none'})"
    )


def gather(
    store: Store,
    ref: int | str,
    ref_b: int | str | None = None,
    *,
    step: int | None = None,
    rules: Sequence[Rule] | None = None,
    limits: Limits | None = None,
) -> ReportData:
    """Read a report's records: ``ref``'s run at ``step`` (default: its first traced step, or
    the first one both runs traced), compared with ``ref_b``'s when given; ``rules``: check the
    run(s) with these rules. Unknown runs and untraced steps raise :class:`StoreError`."""
    limits = limits or Limits()
    run = store.get_run(ref)
    steps = store.steps(run.id)
    diff = None
    if ref_b is not None:
        diff = diff_runs(store, run.id, ref_b, step, step)
        shown = diff.step_a
    elif step is not None and step not in steps:
        raise _missing_step(run, step, steps)
    else:
        shown = step if step is not None else (steps[0] if steps else None)
    flow = store.flow(run.id, shown) if shown is not None else []
    sampled = sample_steps(steps, limits.points)
    checks: list[CheckReport] = []
    if rules is not None:
        checks.append(check_run(store, run, rules))
        if diff is not None and diff.run_b is not None and diff.run_b.id != run.id:
            checks.append(check_run(store, diff.run_b, rules))
    return ReportData(
        run=run,
        steps=tuple(steps),
        step=shown,
        flow=tuple(flow),
        modules=tuple(store.module_tree(run.id)),
        metrics=tuple(store.metrics(run.id)),
        sampled=tuple(sampled),
        history=_history(store, run, sampled, shown, flow),
        diff=diff,
        checks=tuple(checks),
        limits=limits,
    )


def render(data: ReportData) -> str:
    """The whole page as one string."""
    from tracer.web.report_page import page

    return page(data)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """A text file that becomes ``path`` only when the block ends without an error.

    The temporary file is made in ``path``'s folder at once (an unwritable place fails before
    any work) and renamed over ``path`` at the end; on any error it is removed.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a folder", str(target))
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
        os.chmod(temporary, 0o666 & ~_umask())  # what a plain open() would have given it
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report(data: ReportData, path: str | os.PathLike[str]) -> int:
    """Render ``data`` into ``path`` atomically; the number of bytes written."""
    text = render(data)
    with atomic_output(path) as handle:
        handle.write(text)
    return len(text.encode("utf-8"))
