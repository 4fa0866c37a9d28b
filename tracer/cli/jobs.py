"""What the ``tracer`` command shows of distributed jobs: one rank reporting, job lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from tracer.distributed import Placement
    from tracer.plugins.pipeline import Progress
    from tracer.records import RunInfo
    from tracer.store import Store
    from tracer.store.groups import GroupInfo


@contextmanager
def rank_progress(where: Placement, console: Console) -> Iterator[Progress]:
    """Rich bars on rank 0; the other ranks stay silent (their warnings too, errors still show)."""
    if where.is_main:
        from tracer.plugins.progress import RichProgress

        with RichProgress(console) as progress:
            yield progress
        return
    from tracer.plugins.pipeline import SilentProgress

    logger = logging.getLogger("tracer")
    level = logger.level
    logger.setLevel(logging.ERROR)  # rank 0 already says it (e.g. "using the generated corpus")
    try:
        yield SilentProgress()
    finally:
        logger.setLevel(level)


def ranks_text(group: GroupInfo) -> str:
    """``0:5 1:6`` (rank:run id), with ``2:?`` for a rank that recorded nothing."""
    shown = [f"{run.rank}:{run.id}" for run in group.runs]
    shown += [f"{rank}:?" for rank in group.missing_ranks]
    return " ".join(shown)


def group_status(group: GroupInfo) -> str:
    """``completed``, or ``failed (rank 1 died)``."""
    return f"{group.status} ({group.reason})" if group.reason else group.status


def job_line(store: Store, run: RunInfo) -> str:
    """The line ``tracer run`` prints on rank 0 of a job: its id, status and runs by rank."""
    if run.group_id is None:
        return ""
    group = store.group(run.id)
    return (
        f"job {group.group_id}: {group_status(group)}, {len(group.runs)} of "
        f"{group.world_size} ranks (rank:run {ranks_text(group)})    "
        f"compare ranks: tracer diff {run.id} --rank 0 --rank 1"
    )


def job_cells(runs: Sequence[RunInfo], *, by_job: bool) -> Iterator[tuple[RunInfo, str, str]]:
    """(run, status, ranks) per table row: a job folded into its rank 0 run when ``by_job``."""
    from tracer.store.groups import GroupInfo, group_runs

    for entry in group_runs(runs) if by_job else runs:
        if isinstance(entry, GroupInfo):
            yield entry.lead, group_status(entry), ranks_text(entry)
        elif entry.world_size > 1 or entry.group_id is not None:
            yield entry, entry.status, f"{entry.rank} of {entry.world_size}"
        else:
            yield entry, entry.status, "-"


def rank_pair(
    store: Store, ref_a: str, ref_b: str | None, ranks: Sequence[int]
) -> tuple[RunInfo, RunInfo]:
    """The two runs ``tracer diff`` compares: ``RUN_A RUN_B``, each at ``--rank`` (one rank for
    both, or one each); ``RUN_B`` defaults to ``RUN_A`` when two ranks are given."""
    import click

    if len(ranks) > 2:
        raise click.UsageError("--rank takes at most two values (RUN_A's and RUN_B's)")
    if ref_b is None and len(ranks) != 2:
        raise click.UsageError("give RUN_B, or two ranks of RUN_A's job: --rank 0 --rank 1")
    rank_a = ranks[0] if ranks else None
    rank_b = ranks[-1] if ranks else None
    run_a = store.run_of_rank(ref_a, rank_a)
    return run_a, store.run_of_rank(ref_a if ref_b is None else ref_b, rank_b)
