"""Distributed jobs: the runs that share a group id, one per rank, summed up as one job.

A job's status comes from its ranks: running while any rank runs; failed when a rank failed,
died (its process vanished without finishing the run: killed, out of memory) or never recorded
a run; interrupted when a rank was stopped by the user; completed when every rank completed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracer.records import RunInfo
from tracer.store.errors import RunNotFound

if TYPE_CHECKING:
    from tracer.store.store import Store


def died(run: RunInfo) -> bool:
    """True when the run's process ended without finishing it (reported interrupted, no end)."""
    return run.status == "interrupted" and run.finished_at is None


@dataclass(frozen=True)
class GroupInfo:
    """One distributed job: its runs by rank and the job's status."""

    group_id: str
    runs: tuple[RunInfo, ...]  # by rank, then id

    @property
    def lead(self) -> RunInfo:
        """The run that stands for the job: rank 0's when recorded, else the lowest rank's."""
        return self.runs[0]

    @property
    def world_size(self) -> int:
        """How many ranks the job has (the largest world size its runs recorded)."""
        return max(run.world_size for run in self.runs)

    @property
    def ranks(self) -> tuple[int, ...]:
        """The ranks that recorded a run, ascending."""
        return tuple(run.rank for run in self.runs)

    @property
    def dead_ranks(self) -> tuple[int, ...]:
        """Ranks whose process vanished without finishing their run."""
        return tuple(run.rank for run in self.runs if died(run))

    @property
    def failed_ranks(self) -> tuple[int, ...]:
        """Ranks whose run ended ``failed`` (an error, or stopped because another rank failed)."""
        return tuple(run.rank for run in self.runs if run.status == "failed")

    @property
    def missing_ranks(self) -> tuple[int, ...]:
        """Ranks of the job that recorded no run at all."""
        return tuple(sorted(set(range(self.world_size)) - set(self.ranks)))

    @property
    def status(self) -> str:
        """running, failed, interrupted or completed (see the module docstring)."""
        statuses = {run.status for run in self.runs}
        if "running" in statuses:
            return "running"
        if self.dead_ranks or self.missing_ranks or "failed" in statuses:
            return "failed"
        if "interrupted" in statuses:
            return "interrupted"
        return "completed"

    @property
    def reason(self) -> str:
        """Why a job failed, naming the ranks: ``rank 1 died; rank 0 failed`` (empty otherwise)."""
        if self.status != "failed":
            return ""
        parts = []
        for what, ranks in (
            ("died", self.dead_ranks),
            ("failed", self.failed_ranks),
            ("recorded nothing", self.missing_ranks),
        ):
            if ranks:
                word = "rank" if len(ranks) == 1 else "ranks"
                parts.append(f"{word} {', '.join(map(str, ranks))} {what}")
        return "; ".join(parts)

    def rank(self, rank: int) -> RunInfo | None:
        """The run of one rank (the newest, should a rank have recorded twice), or None."""
        found = [run for run in self.runs if run.rank == rank]
        return max(found, key=lambda run: run.id) if found else None


def make_group(group_id: str, runs: Sequence[RunInfo]) -> GroupInfo:
    """A GroupInfo of the runs that share ``group_id``."""
    return GroupInfo(group_id, tuple(sorted(runs, key=lambda run: (run.rank, run.id))))


def group_runs(runs: Sequence[RunInfo]) -> list[RunInfo | GroupInfo]:
    """Runs in their order, with the ranks of each job folded into one GroupInfo at the place of
    the job's first run in ``runs`` (runs without a group id stay as they are)."""
    members: dict[str, list[RunInfo]] = {}
    for run in runs:
        if run.group_id is not None:
            members.setdefault(run.group_id, []).append(run)
    entries: list[RunInfo | GroupInfo] = []
    for run in runs:
        if run.group_id is None:
            entries.append(run)
        elif run.group_id in members:
            entries.append(make_group(run.group_id, members.pop(run.group_id)))
    return entries


def find_group(store: Store, ref: int | str) -> GroupInfo:
    """The job of a run (``ref``: a run id, a name, ``latest``) or the job with group id ``ref``."""
    try:
        run = store.get_run(ref)
    except RunNotFound:
        runs = store.list_runs(group_id=str(ref))
        if not runs:
            raise RunNotFound(f"no run or distributed job {ref!r} in {store.where}") from None
        return make_group(str(ref), runs)
    if run.group_id is None:
        return make_group(f"run-{run.id}", [run])  # a single run is a job of one rank
    return make_group(run.group_id, store.list_runs(group_id=run.group_id))


def run_of_rank(store: Store, ref: int | str, rank: int | None) -> RunInfo:
    """The run of ``rank`` in the job of ``ref`` (``ref`` itself when ``rank`` is None)."""
    if rank is None:
        try:
            return store.get_run(ref)
        except RunNotFound:
            return find_group(store, ref).lead  # a group id stands for its rank 0
    group = find_group(store, ref)
    found = group.rank(rank)
    if found is None:
        if group.world_size == 1 and group.lead.group_id is None:
            raise RunNotFound(f"run {group.lead.id} is a single process: it has no rank {rank}")
        ranks = ", ".join(map(str, group.ranks))
        raise RunNotFound(f"job {group.group_id} has no run for rank {rank} (ranks: {ranks})")
    return found
