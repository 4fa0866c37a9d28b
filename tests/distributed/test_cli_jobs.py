"""The tracer command on a recorded job: one line per job, show a rank, diff two ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from torch import nn

import tracer
from tracer.cli import cli


def record_rank(db: str, rank: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """What one rank of a 2-rank job records through the API (torchrun's variables set)."""
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-42")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    shard = torch.Generator().manual_seed(rank)
    with tracer.trace(model, store=db, name="mlp") as t:
        for _ in range(2):
            model(torch.randn(5, 4, generator=shard))
            t.step()


@pytest.fixture
def job_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database with one single-process run and one completed 2-rank job."""
    db = str(tmp_path / "job.db")
    with tracer.trace(nn.Linear(4, 1), store=db, name="solo") as t:
        t.model(torch.ones(2, 4))
    for rank in (0, 1):
        record_rank(db, rank, monkeypatch)
    return db


def tracer_cli(*args: str) -> Result:
    """Invoke the tracer command in-process."""
    return CliRunner().invoke(cli, list(args))


def test_runs_shows_a_job_as_one_line_with_its_ranks(job_db: str) -> None:
    listed = tracer_cli("runs", "--db", job_db)
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.output.splitlines() if "mlp" in line]
    assert len(lines) == 1 and "0:2 1:3" in lines[0] and "completed" in lines[0]
    assert "solo" in listed.output
    per_rank = tracer_cli("runs", "--db", job_db, "--ranks")
    assert [line for line in per_rank.output.splitlines() if "mlp" in line][1].count("of 2") == 1
    grouped = tracer_cli("runs", "--db", job_db, "--group", "job-42", "--format", "json")
    assert [(r["rank"], r["group_id"]) for r in json.loads(grouped.output)] == [
        (1, "job-42"),
        (0, "job-42"),
    ]


def test_show_rank_opens_that_rank_of_the_job(job_db: str) -> None:
    shown = tracer_cli("show", "2", "--rank", "1", "--db", job_db, "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["run"]["id"] == 3
    table = tracer_cli("show", "job-42", "--rank", "1", "--db", job_db)
    assert "run 3" in table.output and "rank 1 of 2" in table.output
    missing = tracer_cli("show", "2", "--rank", "4", "--db", job_db)
    assert missing.exit_code == 1 and "job job-42 has no run for rank 4" in missing.output
    solo = tracer_cli("show", "1", "--rank", "1", "--db", job_db)
    assert solo.exit_code == 1 and "single process" in solo.output


def test_diff_between_two_ranks_same_shapes_different_statistics(job_db: str) -> None:
    ranks = ("--rank", "0", "--rank", "1")
    compared = tracer_cli("diff", "2", *ranks, "--db", job_db, "--format", "json")
    assert compared.exit_code == 0, compared.output
    doc = json.loads(compared.output)
    assert (doc["run_a"]["id"], doc["run_b"]["id"]) == (2, 3)
    changed = ("shape", "dtype", "device", "added", "removed", "config", "params")
    assert [doc["counts"][key] for key in changed] == [0] * len(changed)  # same flow, same model
    assert doc["counts"]["drift"] > 0  # the ranks saw different data
    table = tracer_cli("diff", "2", "--rank", "0", "--rank", "1", "--db", job_db, "--exit-code")
    assert table.exit_code == 0 and "drift:" in table.output


def test_diff_needs_a_second_run_or_two_ranks(job_db: str) -> None:
    alone = tracer_cli("diff", "2", "--db", job_db)
    assert alone.exit_code == 2 and "give RUN_B, or two ranks" in alone.output
    many = tracer_cli("diff", "2", "--rank", "0", "--rank", "1", "--rank", "1", "--db", job_db)
    assert many.exit_code == 2 and "at most two" in many.output
