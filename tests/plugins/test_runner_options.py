"""The runner's typed pieces: RunOptions built and checked once, plan_run, open_job, run_in_job."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tracer.plugins.config import ConfigError, build_config
from tracer.plugins.manager import PluginManager
from tracer.plugins.runner import RunOptions, open_job, plan_run, run, run_in_job
from tracer.store import Store, open_store


@pytest.fixture
def manager(tiny_plugin: Path) -> PluginManager:
    return PluginManager.load([tiny_plugin], entry_points=False)


class Shown:
    """A progress display that keeps what it was asked to show."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def start(self, description: str, total: int | None) -> None:
        self.lines.append(f"start {description}")

    def advance(self, n: int = 1) -> None:
        pass

    def status(self, text: str) -> None:
        self.lines.append(text)

    def print(self, text: str) -> None:
        self.lines.append(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"every": 0}, "every must be an integer of at least 1, got 0"),
        ({"seed": -2}, "seed must be an integer from 0 to"),
        ({"ops": 1}, "ops must be True or False, got 1"),
        ({"command": 3}, "command must be a string, got 3"),
        ({"tags": {"k": 2}}, "tags must map strings to strings"),
    ],
)
def test_run_options_refuse_a_bad_value_when_built(fields: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        RunOptions(**fields)
    assert message in str(error.value)


def test_run_options_are_frozen_and_keep_their_own_tags() -> None:
    tags = {"team": "a"}
    options = RunOptions(tags=tags)
    tags["team"] = "changed"
    assert dict(options.tags or {}) == {"team": "a"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.every = 2  # type: ignore[misc]


def test_plan_run_refuses_another_pipelines_config(manager: PluginManager) -> None:
    from tracer.plugins.builtin.sentiment import SentimentConfig

    with pytest.raises(ConfigError, match="config must be a TinyConfig, got SentimentConfig"):
        plan_run(manager.pipeline("tiny"), SentimentConfig(), RunOptions(), manager)


def test_plan_run_applies_the_seed_and_collects_plugin_statistics(
    manager: PluginManager,
) -> None:
    pipeline = manager.pipeline("tiny")
    plan = plan_run(pipeline, build_config(pipeline.config_cls, ()), RunOptions(seed=11), manager)
    assert plan.seed == 11
    assert set(plan.extra_stats) == set(manager.tensor_stats)


def test_open_job_closes_a_store_it_opened(tmp_path: Path) -> None:
    opened: list[Store] = []

    def opener() -> Store:
        opened.append(open_store(tmp_path / "r.db"))
        return opened[-1]

    with open_job("cpu", opener) as (job, store):
        pool = store.engine.pool
        assert store is opened[0] and not job.where.distributed
    assert len(opened) == 1
    assert store.engine.pool is not pool  # disposed: its connections were released


def test_open_job_keeps_a_given_store_open_outside_a_job(tmp_path: Path) -> None:
    with open_store(tmp_path / "r.db") as given:
        pool = given.engine.pool
        with open_job("cpu", given) as (_, store):
            assert store is given
        assert given.engine.pool is pool


def test_open_job_nested_shares_the_outer_job(tmp_path: Path) -> None:
    given = open_store(tmp_path / "r.db")
    with open_job("cpu", given) as (outer, _), open_job("cpu", given) as (inner, _):
        assert inner is outer
    given.close()


def test_open_job_refuses_an_unknown_device_before_opening_the_store(tmp_path: Path) -> None:
    def opener() -> Store:
        raise AssertionError("the store must not be opened")

    with pytest.raises(ConfigError, match="unknown device 'warp9'"), open_job("warp9", opener):
        pass
    assert not (tmp_path / "r.db").exists()


def test_run_in_job_records_every_option_it_was_given(
    manager: PluginManager, tmp_path: Path
) -> None:
    pipeline = manager.pipeline("tiny")
    options = RunOptions(
        name="named", every=2, grads=True, seed=5, tags={"k": "v"}, command="tracer run tiny"
    )
    plan = plan_run(pipeline, build_config(pipeline.config_cls, ["steps=4"]), options, manager)
    shown = Shown()
    with open_job("cpu", lambda: open_store(tmp_path / "r.db")) as (job, store):
        result = run_in_job(plan, job, store, progress=shown)
        run_id = result.run.id
        assert store.steps(run_id) == [0, 2]
        flow = store.flow(run_id, 0)
    recorded = result.run
    assert (recorded.name, recorded.seed, recorded.command) == ("named", 5, "tracer run tiny")
    assert dict(recorded.tags) == {"k": "v"}
    assert any(call.grads for call in flow)  # grads=True reached the trace
    assert any(line.startswith("loss ") for line in shown.lines)


def test_runner_run_takes_a_progress_display_and_tags(tmp_path: Path, tiny_plugin: Path) -> None:
    shown = Shown()
    result = run(
        "tiny",
        db=str(tmp_path / "api.db"),
        sets=["steps=2"],
        plugin_files=[tiny_plugin],
        progress=shown,
        tags={"who": "api"},
        every=1,
    )
    assert result.status == "completed"
    assert dict(result.run.tags) == {"who": "api"}
    assert any(line.startswith("loss ") for line in shown.lines)


def test_runner_run_refuses_an_unknown_option_before_the_database(
    tmp_path: Path, tiny_plugin: Path
) -> None:
    with pytest.raises(TypeError, match="evry"):
        run("tiny", db=str(tmp_path / "x.db"), plugin_files=[tiny_plugin], evry=2)
    assert not (tmp_path / "x.db").exists()
