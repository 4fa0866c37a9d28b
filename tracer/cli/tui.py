"""``tracer tui``: open the terminal inspector."""

from __future__ import annotations

import click

from tracer.cli.base import (
    debug_option,
)

#: The largest --every and --seed: what the store's 64-bit integer columns hold.
_INT64_MAX = 2**63 - 1


@click.command()
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
