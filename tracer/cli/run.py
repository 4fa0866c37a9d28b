"""``tracer run``: train a pipeline with tracing on and record it as a run."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from tracer.cli.base import (
    INTERRUPTED,
    common,
    err,
    load_plugins,
    open_store,
    out,
    plugin_option,
)
from tracer.cli.render import lit

#: The largest --every and --seed: what the store's 64-bit integer columns hold.
_INT64_MAX = 2**63 - 1


@click.command()
@click.argument("pipeline_name", metavar="PIPELINE")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a config value (repeatable); see `tracer pipelines`.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read config values from a TOML file (--set wins).",
)
@click.option("--name", help="Name of the run [default: the pipeline's name].")
@click.option(
    "--every",
    type=click.IntRange(min=1, max=_INT64_MAX),
    default=10,
    show_default=True,
    help="Trace every Nth training step.",
)
@click.option(
    "--ops/--no-ops",
    default=True,
    show_default=True,
    help="Record functional reshapes (view, [:, -1], ...) as op calls.",
)
@click.option(
    "--grads/--no-grads", default=False, show_default=True, help="Record gradient statistics."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option(
    "--check",
    "check_steps",
    is_flag=True,
    help="Check each traced step as it is written; print the first error at once.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=_INT64_MAX),
    help="Seed [default: the config's seed, else 0].",
)
@plugin_option
@common
def run(
    pipeline_name: str,
    assignments: tuple[str, ...],
    config_file: Path | None,
    name: str | None,
    every: int,
    ops: bool,
    grads: bool,
    device: str,
    check_steps: bool,
    seed: int | None,
    plugin_files: tuple[Path, ...],
    db: str | None,
) -> None:
    """Train PIPELINE with tracing on and record it as a run."""
    from tracer.cli.jobs import job_line, rank_progress
    from tracer.cli.render import summary_table
    from tracer.plugins.config import build_config
    from tracer.plugins.runner import RunOptions, open_job, plan_run, run_in_job

    plugins = load_plugins(plugin_files)
    pipeline = plugins.pipeline(pipeline_name)
    config = build_config(pipeline.config_cls, assignments, config_file, section=pipeline.name)
    options = RunOptions(
        name=name,
        every=every,
        ops=ops,
        grads=grads,
        device=device,
        seed=seed,
        command=shlex.join(["tracer", *sys.argv[1:]]),
        check=check_steps,
    )
    plan = plan_run(pipeline, config, options, plugins)  # a clash is refused before the database
    # under torchrun: one process group for the whole command; rank 0 creates the schema first
    with open_job(options.device, lambda: open_store(db, create=True)) as (job, store):
        if job.where.is_main:
            err.print(
                Text.assemble(
                    lit(pipeline.name, "bold"),
                    " → ",
                    lit(store.where, limit=None),
                    f"  (tracing every {every} steps)",
                )
            )
        with rank_progress(job.where, err) as progress, _reported(job.where.is_main):
            result = run_in_job(plan, job, store, progress=progress)
        checks = _checks_line(store, result.run, plugins) if job.where.is_main else ""
    if job.where.is_main:  # one rank reports, after every rank has finished (the barrier)
        out.print(summary_table(result.run, result.metrics, result.duration_s))
        out.print(f"run id: {result.run.id}    see it: tracer show {result.run.id}")
        out.print(lit(checks, limit=None))
        if job.where.distributed:
            out.print(lit(job_line(store, result.run), limit=None))
    if result.status == "interrupted":
        err.print("interrupted: the steps recorded so far are kept")
        sys.exit(INTERRUPTED)


def _checks_line(store: Any, run: Any, plugins: Any) -> str:
    """``checks: 0 errors, 1 warning, 2 info — tracer check 7``: the run's findings, counted."""
    from tracer.checks import check_run
    from tracer.checks.findings import counts_text

    try:
        report = check_run(store, store.get_run(run.id), list(plugins.checks().values()))
    except Exception as exc:  # the run is recorded: a failing check must not fail the command
        return f"checks: not run ({type(exc).__name__}: {exc}) — tracer check {run.id}"
    return f"checks: {counts_text(report.counts)} — tracer check {run.id}"


@contextmanager
def _reported(is_main: bool) -> Iterator[None]:
    """Show what a failure leaves: a run whose after_run hook failed, on_run_error failures."""
    from tracer.cli.render import summary_table
    from tracer.plugins.config import ConfigError
    from tracer.plugins.manager import PluginError, PluginFailed
    from tracer.plugins.pipeline import PipelineError
    from tracer.plugins.runner import RunFailed

    try:
        yield
    except PluginFailed as exc:
        result = exc.result
        if result is not None and is_main:  # the run itself finished: show it, then the error
            out.print(summary_table(result.run, result.metrics, result.duration_s))
        raise
    except RunFailed as exc:
        # the error line of a pipeline's own error is that error's message alone: say the rest
        if isinstance(exc.error, (ConfigError, PluginError, PipelineError)):
            for line in exc.hook_errors:
                err.print(f"warning: {line}", markup=False, highlight=False)
        raise
