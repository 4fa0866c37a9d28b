"""``tracer data download``: fetch datasets into the cache."""

from __future__ import annotations

from pathlib import Path

import click

from tracer.cli.base import (
    debug_option,
    err,
    out,
)

#: The largest --every and --seed: what the store's 64-bit integer columns hold.
_INT64_MAX = 2**63 - 1


@click.group()
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
