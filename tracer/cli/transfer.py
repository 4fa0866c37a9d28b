"""``tracer export``, ``import`` and ``rm``: moving runs between databases and deleting them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tracer.cli.base import common, load_plugins, open_store, out, plugin_option
from tracer.records import literal

#: File suffixes a user types for an exporter's own (lower-case, without the dot).
SUFFIX_ALIASES = {"jsonl": "json", "ndjson": "json"}


def say(line: str) -> None:
    """Print a line holding user strings: never parsed as markup."""
    out.print(line, markup=False, highlight=False)


def format_for(output: Path, fmt: str | None, exporters: dict[str, Any]) -> str:
    """The exporter asked for, else the one the file's suffix names (``.jsonl``: json)."""
    if fmt is not None:
        if fmt not in exporters:
            raise click.ClickException(f"unknown format {fmt!r}; available: {', '.join(exporters)}")
        return fmt
    suffix = output.suffix.lstrip(".").lower()
    if not suffix:
        return "json"
    by_suffix = {e.suffix.lstrip(".").lower(): name for name, e in exporters.items() if e.suffix}
    name = SUFFIX_ALIASES.get(suffix) or by_suffix.get(suffix) or suffix
    if name not in exporters:
        raise click.ClickException(
            f"no exporter for the suffix {output.suffix!r}; available: "
            f"{', '.join(exporters)} (choose one with --format)"
        )
    return name


@click.command()
@click.argument("ref", metavar="RUN")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
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
    """Write RUN to a file (json, also .jsonl, re-imports with `tracer import`)."""
    from tracer.store import StoreError

    exporters = load_plugins(plugin_files).exporters
    fmt = format_for(output, fmt, exporters)
    if output.is_dir():
        raise click.ClickException(f"cannot write {output}: it is a directory")
    if not output.parent.is_dir():
        raise click.ClickException(
            f"cannot write {output}: the directory {output.parent} does not exist"
        )
    store = open_store(db)
    run = store.get_run(ref)
    try:
        exporters[fmt].export(store, run.id, output)
    except OSError as exc:  # a plugin's exporter writing the file itself
        raise StoreError(f"cannot write {output}: {(exc.strerror or str(exc)).lower()}") from None
    say(f"run {run.id} ({literal(run.name)}) written to {literal(output)} as {fmt}")


@click.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--as-new", is_flag=True, help="Import a copy even when the database holds this run.")
@common
def import_(path: Path, as_new: bool, db: str | None) -> None:
    """Add a run exported with `tracer export` (json) to the database.

    The whole file is checked first; the run is then written in one transaction, so a refused,
    failed or interrupted import leaves the database as it was.
    """
    from tracer.store.portable import import_run
    from tracer.store.validate import check_export

    check_export(path)  # a bad file is refused before a database is created for it
    run = import_run(open_store(db, create=True), path, as_new=as_new, checked=True)
    say(f"imported as run {run.id} ({literal(run.name)})")


@click.command()
@click.argument("refs", metavar="RUN...", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Delete runs even while a process may still be writing them."
)
@common
def rm(refs: tuple[str, ...], yes: bool, force: bool, db: str | None) -> None:
    """Delete runs and everything recorded for them (never a run still being written)."""
    from tracer.store.removal import why_not_removable

    store = open_store(db)
    targets = [store.get_run(ref) for ref in refs]
    if not force:
        for target in targets:
            why = why_not_removable(store, target.id)
            if why is not None:
                raise click.ClickException(
                    f"run {target.id} ({literal(target.name)}) {why}; "
                    "use --force to delete it anyway"
                )
    listed = ", ".join(f"{r.id} ({literal(r.name)})" for r in targets)
    if not yes:
        click.confirm(f"delete run {listed}?", abort=True)
    for target in targets:
        store.delete_run(target.id)
    say(f"deleted run {listed}")
