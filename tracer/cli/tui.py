"""``tracer tui``: open the terminal inspector."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tracer.cli.base import (
    debug_option,
    load_plugins,
    plugin_option,
)

if TYPE_CHECKING:
    from tracer.checks import Rule

#: The largest --every and --seed: what the store's 64-bit integer columns hold.
_INT64_MAX = 2**63 - 1


@click.command()
@click.option(
    "--db",
    envvar="TRACER_DB",
    metavar="PATH|URL",
    help="Database to inspect [env TRACER_DB; default ./tracer.db].",
)
@plugin_option
@debug_option
def tui(db: str | None, plugin_files: tuple[Path, ...]) -> None:
    """Open the terminal inspector (it flags what `tracer check` finds, plugins' rules too)."""
    try:
        from tracer.tui.app import main as tui_main
    except ImportError as exc:
        raise click.ClickException(f"the terminal inspector is not available: {exc}") from None
    tui_main(db, check_rules(plugin_files))


def check_rules(plugin_files: tuple[Path, ...] = ()) -> tuple[Rule, ...]:
    """The rules whose findings the inspector shows: every plugin's, the built-in ones first."""
    return tuple(load_plugins(plugin_files).checks().values())
