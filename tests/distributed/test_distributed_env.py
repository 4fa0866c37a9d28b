"""tracer.distributed in one process: reading the torchrun variables, the group id, devices,
wrappers, and every helper being a no-op outside a job."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from sqlalchemy import event
from torch import nn

from tracer import distributed
from tracer.distributed import DistributedError, Placement
from tracer.store import open_store

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "abc"}


def test_placement_reads_torchrun_variables() -> None:
    assert distributed.placement(TORCHRUN) == Placement(rank=1, world_size=2, local_rank=1)
    assert distributed.placement({}) == Placement(0, 1, 0)
    assert not distributed.placement({}).distributed
    assert distributed.placement({"RANK": "0", "WORLD_SIZE": "4"}).is_main


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "need 0 <= RANK < WORLD_SIZE"),
        ({"WORLD_SIZE": "0"}, "need 0 <= RANK < WORLD_SIZE"),
    ],
)
def test_placement_rejects_malformed_variables(env: dict[str, str], message: str) -> None:
    with pytest.raises(DistributedError, match=message):
        distributed.placement(env)


def test_group_id_prefers_tracer_variable_then_torchrun_run_id() -> None:
    assert distributed.group_id({**TORCHRUN, "TRACER_GROUP_ID": "mine"}) == "mine"
    assert distributed.group_id(TORCHRUN) == "abc"
    restarted = {**TORCHRUN, "TORCHELASTIC_RESTART_COUNT": "2"}
    assert distributed.group_id(restarted) == "abc.2"  # a restarted job is a new group of runs
    assert distributed.group_id({}) is None  # one process: no group
    # torchrun's default rendezvous id "none" is not unique; without a process group: no id
    assert distributed.group_id({**TORCHRUN, "TORCHELASTIC_RUN_ID": "none"}) is None


def test_run_fields_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TORCHRUN.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRACER_GROUP_ID", raising=False)
    assert distributed.run_fields() == {"rank": 1, "world_size": 2, "group_id": "abc"}
    for name in TORCHRUN:
        monkeypatch.delenv(name)
    assert distributed.run_fields() == {}


def test_local_device_gives_each_local_rank_its_gpu() -> None:
    job = Placement(rank=3, world_size=4, local_rank=1)
    assert distributed.local_device(torch.device("cuda"), job) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cuda", 0), job) == torch.device("cuda", 0)
    assert distributed.local_device(torch.device("cpu"), job) == torch.device("cpu")
    assert distributed.local_device(torch.device("cuda"), Placement()) == torch.device("cuda")
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"


def test_unwrap_returns_the_replica_inside_a_wrapper() -> None:
    model = nn.Linear(2, 2)
    assert distributed.unwrap(nn.DataParallel(model)) is model
    assert distributed.unwrap(model) is model
    holder = nn.Module()
    holder.module = model  # a user's own attribute named "module" is not a wrapper
    assert distributed.unwrap(holder) is holder


def test_helpers_outside_a_job_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    model = nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.sampler(list(range(10)), seed=0) is None
    assert distributed.main_first(lambda: 7) == 7
    closed: list[str] = []
    with distributed.session(torch.device("cpu")) as job:
        assert not job.owned and not job.where.distributed
        job.on_exit(lambda: closed.append("store"))
        with distributed.session(torch.device("cpu")) as inner:
            assert inner is job  # nested sessions share the outer one
        assert closed == []
    assert closed == ["store"]
    assert not torch.distributed.is_initialized()


def test_session_without_rendezvous_records_placement_but_forms_no_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with distributed.session(torch.device("cpu")) as job:
        assert job.where == Placement(1, 2, 1) and not job.owned
    assert not torch.distributed.is_initialized()


def test_sigterm_becomes_terminated_outside_database_calls() -> None:
    restore = distributed._on_sigterm()
    assert restore is not None
    try:
        with pytest.raises(distributed.Terminated, match="stopped by SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here, in the main thread
    finally:
        restore()


def test_sigterm_waits_while_the_store_writes(tmp_path: Path) -> None:
    frames: list[bool] = []
    with open_store(tmp_path / "t.db") as store:
        # what the handler sees when the signal lands inside a statement
        event.listen(
            store.engine,
            "before_cursor_execute",
            lambda *args: frames.append(distributed._in_database_call(sys._getframe())),
        )
        store.create_run(name="x")
    assert frames and all(frames)
    assert not distributed._in_database_call(sys._getframe())
