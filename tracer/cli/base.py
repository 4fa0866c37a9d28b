"""What every ``tracer`` command shares: the consoles, the group that turns errors into one
line, the common options, and opening the store and the plugins."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from tracer.records import literal

F = TypeVar("F", bound=Callable[..., Any])
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
#: Exit status after SIGTERM (128 + SIGTERM): stopped like Ctrl-C, told apart by the caller.
TERMINATED = 143
#: Exit status when the reader of stdout went away (128 + SIGPIPE), as ``yes | head`` gets.
BROKEN_PIPE = 141
#: An error line longer than this (a huge name in a message) ends in an ellipsis.
ERROR_LIMIT = 500


class _Console(Console):
    """A rich console that leaves quietly when its reader goes away (``tracer runs | head``)."""

    def on_broken_pipe(self) -> None:
        """Stop writing and exit with the status a process killed by SIGPIPE reports."""
        self.quiet = True
        if not self.stderr:
            quiet_stdout()
        raise SystemExit(BROKEN_PIPE)


# Piped output is not cut to 80 columns: tables stay readable in files and CI logs.
out = _Console(width=None if sys.stdout.isatty() else 200)
err = _Console(stderr=True)


class _Shown(click.ClickException):
    """An error message already made terminal-safe (its second line is the project's own)."""


class TracerGroup(click.Group):
    """A click group that turns the project's errors into one clear line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own options; an error in them names what was typed literally."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            raise _literal_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; known errors become a message and a non-zero exit status."""
        try:
            return super().invoke(ctx)
        except _Shown:
            raise
        except click.ClickException as exc:
            raise _literal_error(exc) from None
        except (click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            ctx.exit(INTERRUPTED)
        except BrokenPipeError:
            quiet_stdout()
            ctx.exit(BROKEN_PIPE)
        except Exception as exc:
            if _debug(ctx):
                raise
            raise _Shown(_message(exc)) from exc


def _literal_error(exc: click.ClickException) -> click.ClickException:
    """The same error with control characters in its message written out (``\\x1b``)."""
    # click types ``message`` as final; the instance keeps its class, context and exit code
    setattr(exc, "message", literal(exc.message, ERROR_LIMIT))  # noqa: B010
    return exc


def quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and Python's final flush must not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (an in-process test runner)
        pass


def _debug(ctx: click.Context) -> bool:
    """Whether tracebacks were asked for (``--debug`` anywhere, or ``TRACER_DEBUG``)."""
    if os.environ.get("TRACER_DEBUG", "") not in ("", "0"):
        return True
    return bool(ctx.meta.get("tracer.debug"))


def _message(exc: BaseException) -> str:
    """One line for an error; unexpected ones say how to see the traceback."""
    from tracer.plugins.config import ConfigError
    from tracer.plugins.manager import PluginError
    from tracer.plugins.pipeline import PipelineError
    from tracer.plugins.runner import RunFailed
    from tracer.store import StoreError

    user = (ConfigError, PluginError, PipelineError, StoreError)
    if isinstance(exc, RunFailed) and isinstance(exc.error, user):
        return f"{literal(exc.error, ERROR_LIMIT)} ({_marked(exc.run)})"
    if isinstance(exc, user):
        return literal(exc, ERROR_LIMIT)
    if isinstance(exc, RunFailed):
        text = f"{literal(exc, ERROR_LIMIT)} (the steps recorded before the error are kept)"
    else:
        text = f"{type(exc).__name__}: {literal(exc, ERROR_LIMIT)}"
    return text + "\n(run with --debug for the traceback)"


def _marked(run: Any) -> str:
    """What the database says of a failed run: marked failed, or (store unreachable) not."""
    if run.status == "failed":
        return f"run {run.id} is marked failed"
    return (
        f"run {run.id} could not be marked failed; it shows as interrupted once this "
        "process has exited, with the steps written before kept"
    )


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta["tracer.debug"] = True
    return value


DEBUG_FLAG: dict[str, Any] = {
    "is_flag": True,
    "expose_value": False,
    "callback": _set_debug,
    "help": "Show tracebacks instead of one-line errors.",
}

#: ``--debug``: show tracebacks (accepted after any command).
debug_option = click.option("--debug", **DEBUG_FLAG)

#: ``--plugin FILE`` (repeatable): load a Python file as a plugin.
plugin_option = click.option(
    "--plugin",
    "plugin_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Load a Python file as a plugin (repeatable).",
)

#: ``--format table|json``.
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def common(func: F) -> F:
    """The options most commands take: ``--db`` and ``--debug``."""
    return click.option(
        "--db",
        envvar="TRACER_DB",
        metavar="PATH|URL",
        help="Database: a SQLite path or a SQLAlchemy URL [env TRACER_DB; default ./tracer.db].",
    )(debug_option(func))


def open_store(db: str | None, *, create: bool = False) -> Any:
    """Open the store; reading commands refuse a database file that does not exist.

    A database on read-only storage opens read-only: reading commands work, and the commands
    that record runs (``create``) say so before doing any work.
    """
    from tracer.store import open_store as _open
    from tracer.store.engine import location
    from tracer.store.errors import ReadOnlyError

    raw = location(db)
    if not create and "://" not in raw and not Path(raw).exists():
        raise click.ClickException(
            f"no database at {raw} (record a run first: tracer run sentiment)"
        )
    store = _open(db)
    if create and store.read_only is not None:
        store.close()
        raise ReadOnlyError(
            f"{store.where} is read-only ({store.read_only}): runs cannot be recorded there"
        )
    return store


def load_plugins(plugin_files: Sequence[Path] = ()) -> Any:
    """A fresh plugin manager for this invocation."""
    from tracer.plugins.manager import PluginManager

    return PluginManager.load(plugin_files)


def print_json(doc: Any) -> None:
    """Write a JSON document to stdout (strict JSON: NaN becomes null)."""
    from tracer.cli.render import plain_json

    click.echo(json.dumps(plain_json(doc), indent=2, default=str))
