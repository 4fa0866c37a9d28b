"""The ``tracer`` command: run pipelines, list and show runs, diff, export, import, inspect.

Heavy imports (torch, SQLAlchemy, Textual) happen inside the commands that need them, so
``tracer --help`` is instant. Known errors become one line on stderr and exit status 1; with
``--debug`` (or ``TRACER_DEBUG=1``) the traceback is shown instead.
"""

from __future__ import annotations

import logging
import os
import signal
import warnings
from collections.abc import Sequence
from typing import Any

import click

from tracer import __version__
from tracer.cli.base import (
    BROKEN_PIPE,
    DEBUG_FLAG,
    INTERRUPTED,
    TERMINATED,
    TracerGroup,
    err,
    quiet_stdout,
)
from tracer.cli.browse import diff, runs, show
from tracer.cli.catalog import pipelines, plugins
from tracer.cli.check import check
from tracer.cli.data import data
from tracer.cli.db import db_group
from tracer.cli.doctor import doctor
from tracer.cli.report import report
from tracer.cli.run import run
from tracer.cli.serve import serve
from tracer.cli.transfer import export, import_, rm
from tracer.cli.tui import tui
from tracer.records import literal


@click.group(cls=TracerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_eager=True, **DEBUG_FLAG)
@click.version_option(__version__, prog_name="tracer")
def cli() -> None:
    """See what flows through your PyTorch network, layer by layer, across training steps."""
    _setup_logging()


class _ConsoleHandler(logging.Handler):
    """Log records as plain lines on stderr (through rich, so they print above the bars)."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        lines = record.getMessage().split("\n")  # a message's own line breaks stay
        err.print(prefix + "\n".join(map(literal, lines)), markup=False, highlight=False)


def _setup_logging() -> None:
    """Pipelines' messages (e.g. "using the generated corpus") go to stderr, never silently."""
    # torch warns at import when NumPy is missing; nothing here needs NumPy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    logger = logging.getLogger("tracer")
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: SIGTERM stops a command as Ctrl-C does (exit status 143)."""
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        if callable(signal.getsignal(signal.SIGINT)):
            # whatever handles Ctrl-C now (the runner's graceful stop, else KeyboardInterrupt)
            os.kill(os.getpid(), signal.SIGINT)
        else:  # Ctrl-C ignored (started in the background by a shell): stop here instead
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="tracer")
    except SystemExit as exc:
        if terminated and exc.code in (None, 0, INTERRUPTED):  # stopped early, whoever caught it
            raise SystemExit(TERMINATED) from None
        raise
    except BrokenPipeError:  # click's own output (--help) to a reader that left
        quiet_stdout()
        raise SystemExit(BROKEN_PIPE) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


for _command in (
    run,
    pipelines,
    plugins,
    runs,
    show,
    diff,
    report,
    export,
    import_,
    rm,
    data,
    db_group,
    tui,
    serve,
):
    cli.add_command(_command)
cli.add_command(check)
cli.add_command(doctor)
