"""A process's part in a job (distributed.Job), opened once for a run by the runner's open_job."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tracer import distributed
from tracer.distributed import Job, Placement
from tracer.plugins.runner import open_job, run
from tracer.store import open_store

TINY_PLUGIN = Path(__file__).parents[1] / "plugins" / "tiny_plugin.py"


@pytest.fixture
def two_rank_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 of 2 as torchrun would say, with no rendezvous address (no process group)."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TRACER_GROUP_ID", "job-9")
    monkeypatch.delenv("MASTER_ADDR", raising=False)


def test_distributed_job_is_what_a_session_yields_and_keeps_its_old_name() -> None:
    with distributed.session(torch.device("cpu")) as job:
        assert type(job) is Job
    assert distributed.Session is Job


def test_distributed_open_job_releases_a_given_stores_connections_in_a_job(
    two_rank_env: None, tmp_path: Path
) -> None:
    with open_store(tmp_path / "r.db") as given:
        pool = given.engine.pool
        with open_job("cpu", given) as (job, store):
            assert job.where == Placement(1, 2, 1) and store is given
        assert given.engine.pool is not pool  # disposed before the (absent) teardown


def test_distributed_runner_run_records_this_ranks_place(
    two_rank_env: None, tmp_path: Path
) -> None:
    result = run("tiny", db=str(tmp_path / "api.db"), sets=["steps=1"], plugin_files=[TINY_PLUGIN])
    recorded = result.run
    assert (recorded.rank, recorded.world_size, recorded.group_id) == (1, 2, "job-9")
    assert not torch.distributed.is_initialized()
