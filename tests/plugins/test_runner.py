"""Running a pipeline into a real SQLite store: every hook, failures, interrupts, placement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracer.plugins.config import build_config
from tracer.plugins.manager import PluginManager
from tracer.plugins.runner import (
    RunFailed,
    RunResult,
    resolve_device,
    run_pipeline,
    with_seed,
)
from tracer.store import Store, open_store


@pytest.fixture
def manager(tiny_plugin: Path) -> PluginManager:
    return PluginManager.load([tiny_plugin], entry_points=False)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "runs.db")


def events(manager: PluginManager) -> list[tuple[Any, ...]]:
    return manager.pm.get_plugin("tiny_plugin").EVENTS


def run_tiny(manager: PluginManager, store: Store, *sets: str, **kw: Any) -> RunResult:
    pipeline = manager.pipeline("tiny")
    config = build_config(pipeline.config_cls, sets)
    return run_pipeline(pipeline, config, store=store, plugins=manager, every=1, **kw)


def test_hook_register_pipelines_contributes_a_runnable_pipeline(manager, store) -> None:
    result = run_tiny(manager, store, "steps=4")
    assert result.status == "completed"
    assert store.get_run(result.run.id).status == "completed"
    assert store.steps(result.run.id) == [0, 1, 2, 3]
    modules = [c.module for c in store.flow(result.run.id, 0) if c.kind == "module"]
    assert modules == ["", "0", "1", "2"]


def test_hook_register_tensor_stats_adds_a_statistic_to_records(manager, store) -> None:
    result = run_tiny(manager, store)
    relu = next(c for c in store.flow(result.run.id, 0) if c.module == "1")
    value = relu.outputs[0].stats["pos_frac"]
    assert 0.0 <= value <= 1.0
    assert relu.outputs[0].stats["zero_frac"] == pytest.approx(1.0 - value)


def test_hook_register_exporters_adds_an_export_format(manager, store, tmp_path: Path) -> None:
    result = run_tiny(manager, store, name="exported")
    target = tmp_path / "run.txt"
    manager.exporters["txt"].export(store, result.run.id, target)
    assert target.read_text() == f"run {result.run.id}: exported"


def test_hook_before_run_sees_run_pipeline_and_config(manager, store) -> None:
    result = run_tiny(manager, store, "steps=2")
    assert events(manager)[0] == ("before_run", result.run.id, "tiny", 2)


def test_hook_after_step_sees_every_step_with_its_metrics(manager, store) -> None:
    run_tiny(manager, store, "steps=3")
    steps = [e for e in events(manager) if e[0] == "after_step"]
    assert [e[1] for e in steps] == [0, 1, 2]
    assert all(set(e[2]) == {"loss"} for e in steps)


def test_hook_after_run_gets_status_and_last_metrics(manager, store) -> None:
    result = run_tiny(manager, store, "steps=2")
    name, status, metrics = events(manager)[-1]
    assert (name, status) == ("after_run", "completed")
    assert metrics["final"] == 1.5 and "loss" in metrics
    assert result.metrics == metrics


def test_hook_on_run_error_sees_the_failed_run(manager, store) -> None:
    with pytest.raises(RunFailed, match="boom at step 2") as failure:
        run_tiny(manager, store, "steps=5", "fail_at=2")
    run = store.get_run(failure.value.run.id)
    assert run.status == "failed" and "boom at step 2" in (run.error or "")
    assert store.steps(run.id)[:2] == [0, 1]  # what was recorded before the error stays
    assert events(manager)[-1] == ("on_run_error", "failed", "boom at step 2")
    assert not [e for e in events(manager) if e[0] == "after_run"]


def test_runner_keyboard_interrupt_marks_the_run_interrupted(manager, store) -> None:
    result = run_tiny(manager, store, "steps=5", "interrupt_at=3")
    assert result.status == "interrupted"
    assert store.get_run(result.run.id).status == "interrupted"
    assert store.steps(result.run.id)[:3] == [0, 1, 2]
    assert events(manager)[-1][:2] == ("after_run", "interrupted")


def test_runner_stop_request_ends_the_run_interrupted_after_the_step(manager, store) -> None:
    result = run_tiny(manager, store, "steps=5", "stop_at=1")
    assert result.status == "interrupted"
    assert result.steps == 2
    assert store.get_run(result.run.id).status == "interrupted"


def test_runner_records_config_seed_and_name(manager, store) -> None:
    result = run_tiny(manager, store, "width=6", name="mine", seed=7)
    run = store.get_run("mine")
    assert run.id == result.run.id
    assert run.pipeline == "tiny" and run.seed == 7
    assert dict(run.config)["width"] == 6


def test_runner_placement_comes_from_torchrun_variables(
    manager, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TRACER_GROUP_ID", "job-7")
    run = run_tiny(manager, store).run
    assert (run.rank, run.world_size, run.group_id) == (1, 2, "job-7")


def test_runner_with_seed_overrides_a_config_seed_field() -> None:
    from tracer.plugins.builtin.sentiment import SentimentConfig

    config, seed = with_seed(SentimentConfig(seed=3), None)
    assert (config.seed, seed) == (3, 3)
    config, seed = with_seed(SentimentConfig(seed=3), 9)
    assert (config.seed, seed) == (9, 9)


def test_runner_resolve_device_is_clear_about_bad_names() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device 'warp9'"):
        resolve_device("warp9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_runner_run_by_name_is_the_python_face_of_tracer_run(
    tmp_path: Path, tiny_plugin: Path
) -> None:
    from tracer.plugins.runner import run

    result = run(
        "tiny",
        db=str(tmp_path / "api.db"),
        sets=["steps=2"],
        plugin_files=[tiny_plugin],
        name="api",
        every=1,
    )
    assert result.status == "completed" and result.steps == 2
    assert open_store(tmp_path / "api.db").get_run("api").steps == 2
