"""Jobs in the store: ranks folded into one job, the job's status, and which rank died."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.store import RunNotFound, Store, open_store
from tracer.store.groups import GroupInfo, group_runs


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store."""
    with open_store(tmp_path / "jobs.db") as opened:
        yield opened


def add_job(store: Store, group: str, statuses: dict[int, str], world: int = 2) -> list[int]:
    """Runs of one job: rank -> final status (``running`` leaves the run open)."""
    ids = []
    for rank, status in statuses.items():
        run = store.create_run(name="job", rank=rank, world_size=world, group_id=group)
        if status != "running":
            store.finish_run(run.id, status, "boom" if status == "failed" else None)
        ids.append(run.id)
    return ids


def add_dead_rank(store: Store, group: str, rank: int) -> int:
    """A rank whose process created its run and vanished without finishing it."""
    code = (
        "import sys; from tracer.store import open_store; "
        f"print(open_store(sys.argv[1]).create_run(name='job', rank={rank}, world_size=2, "
        f"group_id={group!r}).id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, store.where], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.parametrize(
    ("statuses", "status", "reason"),
    [
        ({0: "completed", 1: "completed"}, "completed", ""),
        ({0: "completed", 1: "running"}, "running", ""),
        ({0: "failed", 1: "completed"}, "failed", "rank 0 failed"),
        ({0: "interrupted", 1: "interrupted"}, "interrupted", ""),
        ({0: "completed"}, "failed", "rank 1 recorded nothing"),
    ],
)
def test_group_status_follows_its_ranks(
    store: Store, statuses: dict[int, str], status: str, reason: str
) -> None:
    add_job(store, "g", statuses)
    group = store.group("g")
    assert (group.status, group.reason) == (status, reason)


def test_group_names_the_rank_whose_process_died(store: Store) -> None:
    add_job(store, "g", {0: "failed"})
    dead = add_dead_rank(store, "g", 1)
    group = store.group(dead)
    assert store.get_run(dead).status == "interrupted"
    assert group.dead_ranks == (1,) and group.failed_ranks == (0,)
    assert (group.status, group.reason) == ("failed", "rank 1 died; rank 0 failed")


def test_group_runs_fold_each_job_into_one_entry_in_order(store: Store) -> None:
    solo = store.create_run(name="solo")
    add_job(store, "a", {0: "completed", 1: "completed"})
    last = store.create_run(name="later")
    entries = group_runs(store.list_runs())
    assert [getattr(e, "id", None) for e in entries] == [last.id, None, solo.id]
    job = entries[1]
    assert isinstance(job, GroupInfo) and job.ranks == (0, 1) and job.lead.rank == 0


def test_run_of_rank_finds_a_rank_by_run_or_group_id(store: Store) -> None:
    first, second = add_job(store, "g-1", {0: "completed", 1: "completed"})
    assert store.run_of_rank(first, 1).id == second
    assert store.run_of_rank("g-1", 0).id == first
    assert store.run_of_rank("g-1", None).id == first  # a group id stands for its rank 0
    assert store.run_of_rank(second, None).id == second
    with pytest.raises(RunNotFound, match=r"job g-1 has no run for rank 5 \(ranks: 0, 1\)"):
        store.run_of_rank(first, 5)
    solo = store.create_run(name="solo")
    assert store.run_of_rank(solo.id, 0).id == solo.id
    with pytest.raises(RunNotFound, match="single process: it has no rank 1"):
        store.run_of_rank(solo.id, 1)
    with pytest.raises(RunNotFound, match="no run or distributed job 'nope'"):
        store.group("nope")
