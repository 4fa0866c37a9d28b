"""``torchrun`` jobs of the sentiment pipeline, for real: two gloo ranks, SQLite and PostgreSQL,
repeated (a finished job must exit 0 every time), and a rank killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from dist_launch import (
    env_for,
    output_means,
    sentiment_args,
    shape_flow,
    torchrun,
    torchrun_command,
)

from tracer.cli import cli
from tracer.store import Store, open_store

REPEATS_SQLITE = 3
REPEATS_POSTGRES = 2


def check_jobs(store: Store, jobs: int) -> None:
    """``jobs`` completed 2-rank jobs: one name, one group each, identical shape flows."""
    runs = store.list_runs()
    assert len(runs) == 2 * jobs
    groups = {run.group_id for run in runs}
    assert len(groups) == jobs and None not in groups
    for group_id in groups:
        group = store.group(group_id)
        assert group.status == "completed" and group.ranks == (0, 1)
        rank0, rank1 = group.runs
        assert {r.world_size for r in group.runs} == {2}
        assert rank0.name == rank1.name == "sentiment"
        assert rank0.pid != rank1.pid
        assert store.steps(rank0.id) == store.steps(rank1.id) == [0, 1, 2]
        flow0, flow1 = store.flow(rank0.id, 0), store.flow(rank1.id, 0)
        assert shape_flow(flow0) == shape_flow(flow1)
        assert [c.module for c in flow0][:3] == ["", "embedding", "lstm"]  # the replica, no DDP
        assert output_means(flow0) != output_means(flow1)  # each rank saw its own shard


def run_repeatedly(db: str, cwd: Path, times: int) -> None:
    for attempt in range(times):
        done = torchrun(*sentiment_args(db), cwd=cwd)
        assert done.returncode == 0, f"attempt {attempt}: exit {done.returncode}\n{done.stderr}"
        assert done.stdout.count("run id:") == 1  # only rank 0 reports
        assert done.stderr.count("val_loss") == 1 and done.stderr.count("generated corpus") == 1
        assert "job " in done.stdout and "completed, 2 of 2 ranks" in done.stdout
        assert "terminate called" not in done.stderr


@pytest.mark.slow
def test_torchrun_sqlite_records_two_ranks_per_job_and_exits_0(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    run_repeatedly(db, tmp_path, REPEATS_SQLITE)
    with open_store(db) as store:
        check_jobs(store, REPEATS_SQLITE)


@pytest.mark.slow
@pytest.mark.postgres
def test_torchrun_postgres_records_two_ranks_per_job_and_exits_0(
    tmp_path: Path, postgres_url: str
) -> None:
    run_repeatedly(postgres_url, tmp_path, REPEATS_POSTGRES)
    with open_store(postgres_url) as store:
        check_jobs(store, REPEATS_POSTGRES)


def wait_for_steps(db: str, rank: int, steps: int, proc: subprocess.Popen[str]) -> int:
    """Poll the store until ``rank`` recorded ``steps`` steps; returns that rank's pid."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before the kill"
        if Path(db).exists():
            with open_store(db) as store:
                for run in store.list_runs():
                    if run.rank == rank and run.steps >= steps and run.pid is not None:
                        return run.pid
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} never recorded {steps} steps")


@pytest.mark.slow
def test_torchrun_killed_rank_fails_the_job_and_keeps_every_record(tmp_path: Path) -> None:
    db = str(tmp_path / "killed.db")
    long = ("max_reviews=3000", "seq_length=20", "embedding_dim=8", "hidden_dim=16",
            "batch_size=10", "epochs=1")  # fmt: skip
    proc = subprocess.Popen(
        torchrun_command(*sentiment_args(db, long)),
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid = wait_for_steps(db, 1, 2, proc)
        os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    with open_store(db) as store:
        group = store.group("latest")
        assert group.status == "failed" and 1 in group.dead_ranks
        for run in group.runs:  # the steps each rank committed are all there and readable
            assert run.steps >= 1 and store.steps(run.id) == list(range(run.steps))
            assert shape_flow(store.flow(run.id, run.steps - 1))
        survivor = group.rank(0)
        assert survivor is not None
        if "forcefully exiting via" in stderr:
            # torchrun killed the survivor itself when its grace period ran out: it died, and
            # its record says so
            assert 0 in group.dead_ranks, stderr
        else:  # stopped by torchrun's SIGTERM (or by the error of its peer): it finished its run
            assert survivor.finished_at is not None, (survivor, stderr)
    listed = CliRunner().invoke(cli, ["runs", "--db", db])
    assert listed.exit_code == 0 and "rank 1 died" in listed.output


@pytest.mark.slow
def test_torchrun_user_ddp_script_traced_through_the_api_records_a_job(tmp_path: Path) -> None:
    db = str(tmp_path / "user.db")
    done = torchrun(str(Path(__file__).with_name("ddp_script.py")), db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open_store(db) as store:
        runs = store.list_runs()
        assert len(runs) == 2 and {r.name for r in runs} == {"user-ddp"}
        group = store.group(runs[0].id)
        assert group.status == "completed" and group.ranks == (0, 1)
        assert group.group_id == runs[1].group_id is not None
        rank0, rank1 = group.runs
        assert (rank0.world_size, rank1.world_size) == (2, 2)
        assert store.steps(rank0.id) == store.steps(rank1.id) == [0, 1, 2]
        flow0, flow1 = store.flow(rank0.id, 2), store.flow(rank1.id, 2)
        assert shape_flow(flow0) == shape_flow(flow1)
        assert output_means(flow0) != output_means(flow1)
