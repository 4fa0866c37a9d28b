"""``tracer report``: write one self-contained HTML file of a run, or of two runs compared."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from tracer.cli.base import common, out, plugin_option

#: Exit status of a report that cannot be made as asked (unknown run, step, output path).
BAD_INPUT = 2


class BadInput(click.ClickException):
    """One line on stderr and exit status 2; no file is left behind."""

    exit_code = BAD_INPUT


def _rules(plugin_files: Sequence[Path]) -> list[Any]:
    """The rules ``tracer check`` runs: the built-in ones and every plugin's."""
    from tracer.cli.base import load_plugins

    return list(load_plugins(plugin_files).checks().values())


def _store(db: str | None) -> Any:
    from tracer.cli.base import open_store

    try:
        return open_store(db)
    except click.ClickException as exc:  # no database there: bad input like any other
        raise BadInput(exc.message) from None


@click.command()
@click.argument("ref", metavar="RUN")
@click.argument("ref_b", metavar="[RUN_B]", required=False)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The HTML file to write (replaced whole once written).",
)
@click.option("--step", type=int, help="Traced step to show [default: the first (common) one].")
@click.option("--checks", is_flag=True, help="Add tracer check's findings; mark flagged layers.")
@plugin_option
@common
def report(
    ref: str,
    ref_b: str | None,
    output: Path,
    step: int | None,
    checks: bool,
    plugin_files: tuple[Path, ...],
    db: str | None,
) -> None:
    """Write RUN (and its diff against RUN_B) as one HTML file to share: no network needed to
    view it. In CI: `tracer diff A B --exit-code` plus `tracer report A B -o diff.html`."""
    from tracer.records import literal
    from tracer.store import StoreError
    from tracer.web.report import atomic_output, gather, render

    started = time.perf_counter()
    try:
        with atomic_output(output) as handle:
            store = _store(db)
            try:
                rules = _rules(plugin_files) if checks else None
                data = gather(store, ref, ref_b, step=step, rules=rules)
            finally:
                store.close()
            text = render(data)
            handle.write(text)
    except StoreError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise BadInput(f"cannot write {literal(output)}: {reason}") from None
    size = len(text.encode("utf-8"))
    what = f"run {data.run.id}" + (
        f" vs run {data.diff.run_b.id}" if data.diff and data.diff.run_b else ""
    )
    out.print(
        f"wrote {literal(output)} ({size / 1024:,.0f} KiB, {what}, step {data.step}) "
        f"in {time.perf_counter() - started:.2f}s",
        markup=False,
        highlight=False,
    )
