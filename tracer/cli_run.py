"""``tracer run``, ``pipelines``, ``plugins``, ``data download`` and ``tui``."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from tracer.cli import (
    INTERRUPTED,
    cli,
    common,
    debug_option,
    err,
    format_option,
    load_plugins,
    open_store,
    out,
    plugin_option,
    print_json,
)
from tracer.cli_render import lit

#: The largest --every and --seed: what the store's 64-bit integer columns hold.
_INT64_MAX = 2**63 - 1


@cli.command()
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
    seed: int | None,
    plugin_files: tuple[Path, ...],
    db: str | None,
) -> None:
    """Train PIPELINE with tracing on and record it as a run."""
    from tracer import distributed
    from tracer.cli_jobs import job_line, rank_progress
    from tracer.cli_render import summary_table
    from tracer.plugins.config import build_config
    from tracer.plugins.runner import resolve_device, run_pipeline

    plugins = load_plugins(plugin_files)
    pipeline = plugins.pipeline(pipeline_name)
    config = build_config(pipeline.config_cls, assignments, config_file, section=pipeline.name)
    plugins.collect_all()  # a clash is refused before the database is touched
    # under torchrun: one process group for the whole command; rank 0 creates the schema first
    with distributed.session(resolve_device(device)) as job:
        store = distributed.main_first(lambda: open_store(db, create=True))
        job.on_exit(store.close)
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
            result = run_pipeline(
                pipeline,
                config,
                store=store,
                plugins=plugins,
                name=name,
                every=every,
                ops=ops,
                grads=grads,
                device=device,
                seed=seed,
                progress=progress,
                command=shlex.join(["tracer", *sys.argv[1:]]),
            )
    if job.where.is_main:  # one rank reports, after every rank has finished (the barrier)
        out.print(summary_table(result.run, result.metrics, result.duration_s))
        out.print(f"run id: {result.run.id}    see it: tracer show {result.run.id}")
        if job.where.distributed:
            out.print(lit(job_line(store, result.run), limit=None))
    if result.status == "interrupted":
        err.print("interrupted: the steps recorded so far are kept")
        sys.exit(INTERRUPTED)


@contextmanager
def _reported(is_main: bool) -> Iterator[None]:
    """Show what a failure leaves: a run whose after_run hook failed, on_run_error failures."""
    from tracer.cli_render import summary_table
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


def _config_table(pipeline: Any) -> Table:
    from tracer.plugins.config import config_fields

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("key", "type", "default", "range", "help"):
        table.add_column(column)
    for f in config_fields(pipeline.config_cls):
        table.add_row(lit(f.name), f.type_name, lit(repr(f.default)), f.range_text, lit(f.help))
    return table


@cli.command()
@plugin_option
@format_option
@debug_option
def pipelines(plugin_files: tuple[Path, ...], fmt: str) -> None:
    """List pipelines, the plugin each comes from, and their config keys."""
    from tracer.plugins.config import config_fields

    found = load_plugins(plugin_files).pipelines
    if fmt == "json":
        print_json(
            [
                {
                    "name": p.name,
                    "plugin": p.plugin,
                    "description": p.description,
                    "config": [
                        {
                            "key": f.name,
                            "type": f.type_name,
                            "default": f.default,
                            "min": f.min,
                            "max": f.max,
                            "help": f.help,
                        }
                        for f in config_fields(p.config_cls)
                    ],
                }
                for p in found.values()
            ]
        )
        return
    for p in found.values():
        out.print(
            Text.assemble(
                lit(p.name, "bold"),
                "  ",
                lit(p.description),
                "  ",
                lit(f"(plugin: {p.plugin})", "dim"),
            )
        )
        out.print(_config_table(p))
        out.print()


@cli.command()
@plugin_option
@format_option
@debug_option
def plugins(plugin_files: tuple[Path, ...], fmt: str) -> None:
    """List loaded plugins: where each comes from, its hooks and what it contributes."""
    manager = load_plugins(plugin_files)
    contributed: dict[str, list[str]] = {}
    for kind, items in (
        ("pipeline", manager.pipelines),
        ("exporter", manager.exporters),
        ("stat", manager.tensor_stats),
    ):
        for item in items.values():
            contributed.setdefault(item.plugin, []).append(f"{kind} {item.name}")
    infos = manager.plugins()
    if fmt == "json":
        print_json(
            [
                {
                    "name": i.name,
                    "source": i.source,
                    "hooks": list(i.hooks),
                    "contributes": contributed.get(i.name, []),
                }
                for i in infos
            ]
        )
        return
    table = Table(box=None, header_style="bold")
    for column in ("plugin", "source", "hooks", "contributes"):
        table.add_column(column)
    for i in infos:
        table.add_row(
            lit(i.name),
            lit(i.source),
            ", ".join(i.hooks),
            lit(", ".join(contributed.get(i.name, []))),
        )
    out.print(table)


@cli.group()
def data() -> None:
    """Fetch datasets into the cache ($TRACER_CACHE, else ~/.cache/layer-tracer)."""


@data.command("download")
@click.argument("dataset", type=click.Choice(["imdb"]))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to extract into [default: the cache].",
)
@click.option("--url", help="Download from this URL instead of the official archive.")
@click.option("--sha256", help="Expected SHA-256 of the archive (with --url).")
@click.option("--force", is_flag=True, help="Download again even if the data is there.")
@debug_option
def download(
    dataset: str, dest: Path | None, url: str | None, sha256: str | None, force: bool
) -> None:
    """Download DATASET, verify its checksum and extract it."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from tracer.plugins.builtin.sentiment.download import IMDB_SHA256, IMDB_URL, download_imdb

    if url and not sha256:
        raise click.UsageError("--url needs --sha256 (the archive's checksum)")
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("imdb", total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        where = download_imdb(
            dest, url=url or IMDB_URL, sha256=sha256 or IMDB_SHA256, force=force, progress=report
        )
    out.print(f"IMDB is in {where}")


@cli.command()
@click.option(
    "--db",
    envvar="TRACER_DB",
    metavar="PATH|URL",
    help="Database to inspect [env TRACER_DB; default ./tracer.db].",
)
@debug_option
def tui(db: str | None) -> None:
    """Open the terminal inspector."""
    try:
        from tracer.tui.app import main as tui_main
    except ImportError as exc:
        raise click.ClickException(f"the terminal inspector is not available: {exc}") from None
    tui_main(db)
