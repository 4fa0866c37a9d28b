"""``tracer runs``, ``show`` and ``diff``: reading the store."""

from __future__ import annotations

import sys

import click
from rich.text import Text

from tracer.cli.base import common, format_option, open_store, out
from tracer.cli.base import print_json as emit_json


@click.command()
@click.option("--pipeline", help="Only runs of this pipeline.")
@click.option(
    "--status",
    type=click.Choice(["running", "completed", "failed", "interrupted"]),
    help="Only runs with this status.",
)
@click.option("--name", help="Only runs with this name.")
@click.option("--group", "group_id", help="Only runs of this distributed job (group id).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (newest first).")
@click.option(
    "--ranks", "per_rank", is_flag=True, help="One line per rank of a distributed job, not per job."
)
@format_option
@common
def runs(
    pipeline: str | None,
    status: str | None,
    name: str | None,
    group_id: str | None,
    limit: int | None,
    per_rank: bool,
    fmt: str,
    db: str | None,
) -> None:
    """List recorded runs, newest first (a distributed job on one line with its ranks)."""
    from tracer.cli.render import MAX_METRIC_COLUMNS, metric_columns, run_dict, runs_table

    found = open_store(db).list_runs(
        pipeline=pipeline, status=status, name=name, group_id=group_id, limit=limit
    )
    if fmt == "json":
        emit_json([run_dict(r) for r in found])
    elif not found:
        out.print("no runs")
    else:
        out.print(runs_table(found, by_job=not (per_rank or group_id)))
        hidden = len(metric_columns(found)) - MAX_METRIC_COLUMNS
        if hidden > 0:
            more = f"{hidden} more {'metric' if hidden == 1 else 'metrics'}: --format json"
            out.print(Text(more, style="dim"))


@click.command()
@click.argument("ref", metavar="RUN")
@click.option("--step", type=int, help="Traced step to show [default: the first].")
@click.option("--rank", type=click.IntRange(min=0), help="That rank of RUN's distributed job.")
@click.option("--layer", metavar="GLOB", help="Only layers whose path or op matches (lstm*, fc).")
@click.option(
    "--names",
    is_flag=True,
    help="Label dimensions equal to a config value: (batch_size, seq_length, ...).",
)
@format_option
@common
def show(
    ref: str,
    step: int | None,
    rank: int | None,
    layer: str | None,
    names: bool,
    fmt: str,
    db: str | None,
) -> None:
    """Show the shape flow of one traced step of RUN (an id, a name or `latest`)."""
    from tracer.cli.render import LINE_LIMIT, flow_dict, flow_table, no_layer_message, select_calls
    from tracer.records import dimension_names, literal

    store = open_store(db)
    run = store.run_of_rank(ref, rank)
    steps = store.steps(run.id)
    if not steps:
        raise click.ClickException(f"run {run.id} ({run.name}) has no traced steps")
    chosen = steps[0] if step is None else step
    if chosen not in steps:
        shown = ", ".join(map(str, steps[:20])) + (" ..." if len(steps) > 20 else "")
        raise click.ClickException(f"run {run.id} has no traced step {chosen} (traced: {shown})")
    flow = store.flow(run.id, chosen)
    calls = select_calls(flow, layer)
    if layer and not calls:
        raise click.ClickException(no_layer_message(layer, flow))
    if fmt == "json":
        emit_json(flow_dict(run, chosen, calls, names))
        return
    header = Text(f"run {run.id}", style="bold")
    header.append(
        f" {literal(run.name, LINE_LIMIT)} · {literal(run.pipeline or '-')} · "
        f"{literal(run.status)} · "
        + (f"rank {run.rank} of {run.world_size} · " if run.world_size > 1 else "")
        + f"step {chosen} ({len(steps)} traced)"
    )
    out.print(header)
    out.print(flow_table(calls, dimension_names(run.config) if names else None))


@click.command()
@click.argument("ref_a", metavar="RUN_A")
@click.argument("ref_b", metavar="[RUN_B]", required=False)
@click.option(
    "--rank",
    "ranks",
    type=click.IntRange(min=0),
    multiple=True,
    help="Rank of the job to compare; twice: RUN_A's and RUN_B's (RUN_B defaults to RUN_A).",
)
@click.option("--step", type=int, help="Traced step to compare [default: first common one].")
@click.option("--step-b", type=int, help="A different step for RUN_B.")
@click.option("--drift", is_flag=True, help="Also list value statistics that moved > 10%.")
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit with 1 when shapes, dtypes or devices differ (a CI shape contract).",
)
@format_option
@common
def diff(
    ref_a: str,
    ref_b: str | None,
    ranks: tuple[int, ...],
    step: int | None,
    step_b: int | None,
    drift: bool,
    exit_code: bool,
    fmt: str,
    db: str | None,
) -> None:
    """Compare the flows of two runs (or two ranks of a job: `tracer diff RUN --rank 0 --rank 1`):
    config changes, then every call with changes marked."""
    from tracer.cli.diff_render import diff_dict, diff_renderable, structure_differs
    from tracer.cli.jobs import rank_pair

    store = open_store(db)
    run_a, run_b = rank_pair(store, ref_a, ref_b, ranks)
    same_job = run_a.group_id is not None and run_a.group_id == run_b.group_id
    drift = drift or same_job  # ranks of a job share shapes; their values are what differs
    result = store.diff(run_a.id, run_b.id, step, step_b if step_b is not None else step)
    if fmt == "json":
        emit_json(diff_dict(result))
    else:
        out.print(diff_renderable(result, drift))
    if exit_code and structure_differs(result):
        sys.exit(1)
