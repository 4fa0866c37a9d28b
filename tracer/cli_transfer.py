"""``tracer export``, ``import`` and ``rm``: moving runs between databases and deleting them."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from tracer.cli import cli, common, load_plugins, open_store, out, plugin_option
from tracer.records import literal


@cli.command()
@click.argument("ref", metavar="RUN")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write.",
)
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    help="Exporter: json, csv or one from a plugin [default: from the file suffix].",
)
@plugin_option
@common
def export(
    ref: str, output: Path, fmt: str | None, plugin_files: tuple[Path, ...], db: str | None
) -> None:
    """Write RUN to a file (json re-imports with `tracer import`)."""
    exporters = load_plugins(plugin_files).exporters
    fmt = fmt or output.suffix.lstrip(".") or "json"
    if fmt not in exporters:
        raise click.ClickException(f"unknown format {fmt!r}; available: {', '.join(exporters)}")
    store = open_store(db)
    run = store.get_run(ref)
    exporters[fmt].export(store, run.id, output)
    out.print(Text(f"run {run.id} ({literal(run.name)}) written to {literal(output)} as {fmt}"))


@cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@common
def import_(path: Path, db: str | None) -> None:
    """Add a run exported with `tracer export --format json` to the database."""
    run = open_store(db, create=True).import_run(path)
    out.print(Text(f"imported as run {run.id} ({literal(run.name)})"))


@cli.command()
@click.argument("refs", metavar="RUN...", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@common
def rm(refs: tuple[str, ...], yes: bool, db: str | None) -> None:
    """Delete runs and everything recorded for them."""
    store = open_store(db)
    targets = [store.get_run(ref) for ref in refs]
    listed = ", ".join(f"{r.id} ({literal(r.name)})" for r in targets)
    if not yes:
        click.confirm(f"delete run {listed}?", abort=True)
    for target in targets:
        store.delete_run(target.id)
    out.print(Text(f"deleted run {listed}"))
