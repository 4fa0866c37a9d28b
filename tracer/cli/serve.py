"""``tracer serve``: the terminal inspector in a browser (textual-serve, an extra)."""

from __future__ import annotations

import os
import sys

import click

from tracer.cli.base import debug_option, err, open_store
from tracer.records import literal
from tracer.web.serve_guard import is_local

#: Exit status when the ``web`` extra is missing (as for a usage error: nothing was started).
MISSING_EXTRA = 2


class _MissingExtra(click.ClickException):
    exit_code = MISSING_EXTRA


@click.command()
@click.option(
    "--db",
    envvar="TRACER_DB",
    metavar="PATH|URL",
    help="Database to inspect [env TRACER_DB; default ./tracer.db].",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; anything but this machine's loopback is warned about.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--read-only/--read-write",
    "read_only",
    default=None,
    help="Whether the inspector may delete runs [default: read-write on 127.0.0.1, "
    "read-only on any other host].",
)
@debug_option
def serve(db: str | None, host: str, port: int, read_only: bool | None) -> None:
    """Serve the inspector to a browser: the same screens and keys as tracer tui.

    Prints the address to open first (it holds a token made for this start: the page and its
    connection refuse anyone without it). Ctrl-C or SIGTERM stops the server and every tab.
    """
    try:
        from tracer.web.serve import ServeOptions
        from tracer.web.serve import serve as run_server
    except ImportError as exc:
        raise _MissingExtra(
            f"tracer serve needs textual-serve ({exc.name or exc}): pip install 'layer-tracer[web]'"
        ) from None
    options = ServeOptions(
        db=_checked_database(db),
        host=host,
        port=port,
        read_only=not is_local(host) if read_only is None else read_only,
    )
    try:
        run_server(options, lambda url: _announce(url, host, options.read_only))
    except OSError as exc:  # the port is taken, the host is not this machine's
        raise click.ClickException(
            f"cannot listen on {literal(host)}:{port}: {exc.strerror or exc}"
        ) from None
    err.print("stopped", highlight=False)


def _checked_database(db: str | None) -> str:
    """The database each tab opens, read once here so that a bad one fails before serving
    (a relative path made absolute: the tabs do not share the server's directory forever)."""
    from tracer.store.engine import location

    store = open_store(db)
    try:
        store.list_runs(limit=1)
    finally:
        store.close()
    raw = location(db)
    return raw if "://" in raw else os.path.abspath(raw)


def _announce(url: str, host: str, read_only: bool) -> None:
    """The URL on the first line of stdout; what the user should know on stderr."""
    click.echo(url)
    sys.stdout.flush()
    if not is_local(host):
        err.print(
            f"warning: listening on {literal(host)}: anyone who can reach this port and has "
            "the address above can use the inspector, over plain http (put it behind https "
            "to cross a network you do not trust)",
            highlight=False,
            markup=False,
        )
    mode = "read-only" if read_only else "runs can be deleted from the inspector"
    err.print(f"serving the inspector ({mode}); Ctrl-C stops it", highlight=False, markup=False)
