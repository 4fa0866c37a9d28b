"""Hostile plugins: hooks and pipeline stages that raise or exit, clashing statistics, hints."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tracer.plugins.config import build_config
from tracer.plugins.manager import PluginError, PluginFailed, PluginManager, describe, one_line
from tracer.plugins.runner import RunFailed, RunResult, run_pipeline
from tracer.store import Store, open_store

ACT = """
import sys
from dataclasses import dataclass, field
from tracer import hookimpl
from tracer.plugins.pipeline import Pipeline, TensorStat


class Stop(BaseException):
    '''Neither an Exception nor Ctrl-C.'''


def act(action, where):
    if action == "raise":
        raise ValueError(f"{where} broke")
    if action == "exit":
        sys.exit(3)
    if action == "base":
        raise Stop(where)
    if action == "cpp":
        import torch
        torch.empty(2**64)
"""

HOOK_ARGS = {
    "before_run": "run",
    "after_step": "run, step",
    "after_run": "run, status",
    "on_run_error": "run, error",
}

PIPELINE = """
@dataclass
class HostileConfig:
    stage: str = field(default="", metadata={"help": "the stage that misbehaves"})
    action: str = field(default="raise", metadata={"help": "raise, exit, base or cpp"})


def data(config):
    import torch
    if config.stage == "data":
        act(config.action, "data")
    return torch.randn(4, 3)


def model(config):
    from torch import nn
    if config.stage == "model":
        act(config.action, "model")
    if config.stage == "model-type":
        return [1, 2]
    return nn.Linear(3, 1)


def train(model, data, config, ctx):
    for i in range(2):
        model(data).sum().backward()
        ctx.step({"i": i})
        if config.stage == "train":
            act(config.action, "train")
    return {}


@hookimpl
def register_pipelines(register):
    register(Pipeline("hostile", "misbehaves on request", HostileConfig, data, model, train))
"""


def hook_plugin(hook: str, action: str) -> str:
    """A plugin whose one lifecycle hook misbehaves."""
    return ACT + f"\n@hookimpl\ndef {hook}({HOOK_ARGS[hook]}):\n    act({action!r}, {hook!r})\n"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "runs.db")


@pytest.fixture
def load(tiny_plugin: Path, write_plugin: Callable[[str, str], Path]) -> Callable[..., Any]:
    """A manager with the tiny pipeline, the hostile pipeline and the given extra plugin."""

    def make(extra: str | None = None, *, tiny: bool = True) -> PluginManager:
        # tiny_plugin's own hooks read a TinyConfig: left out where the hostile pipeline runs
        files = [tiny_plugin] if tiny else []
        files.append(write_plugin("hostile", ACT + PIPELINE))
        if extra is not None:
            files.append(write_plugin("bad", extra))
        return PluginManager.load(files, entry_points=False)

    return make


def run_it(manager: PluginManager, store: Store, pipeline: str, *sets: str) -> RunResult:
    found = manager.pipeline(pipeline)
    config = build_config(found.config_cls, sets)
    return run_pipeline(found, config, store=store, plugins=manager, every=1, device="cpu")


@pytest.mark.parametrize(
    ("action", "said"),
    [("raise", "ValueError: after_run broke"), ("exit", "called sys.exit(3)"), ("base", "Stop")],
)
def test_hostile_after_run_failure_names_the_plugin_and_keeps_the_completed_run(
    load, store: Store, action: str, said: str
) -> None:
    with pytest.raises(PluginFailed) as failure:
        run_it(load(hook_plugin("after_run", action)), store, "tiny", "steps=2")
    assert str(failure.value).startswith(f"plugin 'bad' failed in after_run: {said}")
    assert "(run 1 (tiny) itself completed; it is kept)" in str(failure.value)
    assert failure.value.result.status == "completed"
    run = store.get_run(1)
    assert run.status == "completed" and store.steps(1) == [0, 1]


@pytest.mark.parametrize("hook", ["before_run", "after_step"])
@pytest.mark.parametrize(
    ("action", "said"),
    [("raise", "ValueError: {hook} broke"), ("exit", "called sys.exit(3)"), ("base", "Stop")],
)
def test_hostile_hook_failure_during_the_run_names_the_plugin_and_fails_the_run(
    load, store: Store, hook: str, action: str, said: str
) -> None:
    with pytest.raises(RunFailed) as failure:
        run_it(load(hook_plugin(hook, action)), store, "tiny", "steps=3")
    who = f"plugin 'bad' failed in {hook}: {said.format(hook=hook)}"
    assert str(failure.value).startswith(f"run 1 (tiny) failed: {who}")
    run = store.get_run(1)
    assert run.status == "failed" and (run.error or "").startswith(who)
    assert store.steps(1) == ([] if hook == "before_run" else [0])  # the step before is kept


@pytest.mark.parametrize("action", ["raise", "exit", "base"])
def test_hostile_on_run_error_failure_names_the_plugin_and_keeps_the_run_error(
    load, store: Store, action: str, recwarn: pytest.WarningsRecorder
) -> None:
    with pytest.raises(RunFailed) as failure:
        run_it(load(hook_plugin("on_run_error", action)), store, "tiny", "steps=3", "fail_at=1")
    text = str(failure.value)
    assert text.startswith("run 1 (tiny) failed: pipeline 'tiny' (plugin 'tiny_plugin') failed")
    assert "RuntimeError: boom at step 1" in text
    assert "; also plugin 'bad' failed in on_run_error" in text
    assert failure.value.hook_errors and not recwarn.list  # said once, in the error
    assert store.get_run(1).status == "failed"


@pytest.mark.parametrize("stage", ["data", "model"])
@pytest.mark.parametrize(
    ("action", "said"),
    [
        ("raise", "ValueError: {stage} broke"),
        ("exit", "called sys.exit(3)"),
        ("base", "Stop"),
        ("cpp", "TypeError: empty(): argument 'size' failed to unpack"),
    ],
)
def test_hostile_stage_before_the_run_names_pipeline_and_plugin_and_creates_no_run(
    load, store: Store, stage: str, action: str, said: str
) -> None:
    with pytest.raises(PluginFailed) as failure:
        run_it(load(tiny=False), store, "hostile", f"stage={stage}", f"action={action}")
    text = str(failure.value)
    who = f"pipeline 'hostile' (plugin 'hostile') failed in {stage}: {said.format(stage=stage)}"
    assert text.startswith(who) and text.endswith("(no run was created)")
    assert "frame #" not in text and "\n" not in text
    assert store.list_runs() == []


def test_hostile_model_that_is_not_a_module_is_refused_before_a_run(load, store: Store) -> None:
    with pytest.raises(PluginFailed, match="failed in model: TypeError: it returned list, not a"):
        run_it(load(tiny=False), store, "hostile", "stage=model-type")
    assert store.list_runs() == []


@pytest.mark.parametrize(
    ("action", "said"),
    [
        ("raise", "ValueError: train broke"),
        ("exit", "called sys.exit(3)"),
        ("base", "Stop"),
        ("cpp", "TypeError: empty(): argument 'size' failed to unpack the object"),
    ],
)
def test_hostile_train_failure_names_pipeline_and_plugin_and_fails_the_run(
    load, store: Store, action: str, said: str
) -> None:
    with pytest.raises(RunFailed) as failure:
        run_it(load(tiny=False), store, "hostile", "stage=train", f"action={action}")
    who = f"pipeline 'hostile' (plugin 'hostile') failed in train: {said}"
    assert str(failure.value).startswith(f"run 1 (hostile) failed: {who}")
    run = store.get_run(1)
    assert run.status == "failed" and (run.error or "").startswith(who)
    assert "frame #" not in (run.error or "") and "\n" not in (run.error or "")
    assert store.steps(1) == [0]


def test_hostile_one_line_drops_the_cpp_backtrace() -> None:
    error = RuntimeError("bad size\nException raised from f at x.cpp:1:\nframe #0: c10::Error")
    assert one_line(error) == "bad size"
    assert describe(SystemExit(0)) == "called sys.exit(0)"
    assert describe(RuntimeError("a\n  b")) == "RuntimeError: a b"

    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe(Hostile()) == "Hostile: (the error's message could not be read)"


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("import sys\nsys.exit(0)\n", "failed to import: called sys.exit(0)"),
        ("raise KeyError('x')\n", "failed to import: KeyError: 'x'"),
        ("class Stop(BaseException): pass\nraise Stop('no')\n", "failed to import: Stop: no"),
    ],
)
def test_hostile_plugin_file_that_exits_at_import_is_named(
    write_plugin: Callable[[str, str], Path], source: str, said: str
) -> None:
    path = write_plugin("quitter", source)
    with pytest.raises(PluginError, match=re.escape(f"plugin file {path} {said}")):
        PluginManager.load([path], entry_points=False)


def test_hostile_contribution_hook_that_exits_is_named(write_plugin) -> None:
    path = write_plugin(
        "quitter", ACT + "\n@hookimpl\ndef register_pipelines(register):\n    act('exit', 'x')\n"
    )
    with pytest.raises(PluginError, match="'quitter' failed in register_pipelines: called sys"):
        _ = PluginManager.load([path], entry_points=False).pipelines


def test_hostile_lifecycle_hook_wrapper_is_refused_at_load(write_plugin) -> None:
    path = write_plugin(
        "wrapper",
        "from tracer import hookimpl\n\n@hookimpl(wrapper=True)\ndef after_run(run):\n"
        "    return (yield)\n",
    )
    with pytest.raises(PluginError, match="'wrapper': after_run cannot be a hook wrapper"):
        PluginManager.load([path], entry_points=False)


def stat_plugin(name: str, fn: str) -> str:
    """A plugin contributing one statistic, ``TensorStat(name, fn)``."""
    register = f"    register(TensorStat({name!r}, {fn}))\n"
    return ACT + "\n@hookimpl\ndef register_tensor_stats(register):\n" + register


@pytest.mark.parametrize(
    ("name", "fn", "said"),
    [
        ("mean", "abs", "'mean' is built in"),
        ("true_frac", "abs", "'true_frac' is built in"),
        ("my-stat", "abs", "statistic name must be an identifier, got 'my-stat'"),
        ("fine", "3", "statistic 'fine' must be callable, got int"),
    ],
)
def test_hostile_bad_statistic_is_refused_before_a_run(
    load, store: Store, name: str, fn: str, said: str
) -> None:
    with pytest.raises(PluginError, match=f"plugin 'bad': invalid contribution.*{said}"):
        run_it(load(stat_plugin(name, fn)), store, "tiny")
    assert store.list_runs() == []


def test_hostile_two_plugins_with_one_statistic_name_leave_no_run(
    load, store: Store, write_plugin
) -> None:
    manager = load(stat_plugin("pos_frac", "abs"))  # tiny_plugin has pos_frac too
    with pytest.raises(PluginError, match=r"'pos_frac' is registered twice.*'tiny_plugin'.*'bad'"):
        run_it(manager, store, "tiny")
    assert store.list_runs() == []


def test_hostile_unknown_pipeline_hints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_plugin: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_plugin.py").write_text("x = 1\n")
    manager = PluginManager.load([tiny_plugin], entry_points=False)
    hints = {
        "my_plugin": "'my_plugin.py' is a file here: load it with --plugin my_plugin.py",
        "my_plugin.py": "'my_plugin.py' is a file here: load it with --plugin my_plugin.py",
        "elsewhere.py": "'elsewhere.py' looks like a file name: load a plugin file with --plugin",
        "tiny_plugin": "Plugin 'tiny_plugin' contributes the pipelines: tiny",
        "pluggy": "The installed package pluggy",
    }
    for name, hint in hints.items():
        with pytest.raises(PluginError) as error:
            manager.pipeline(name)
        assert f"unknown pipeline {name!r}; available: sentiment, tiny. {hint}" in str(error.value)
    with pytest.raises(PluginError, match="declares no tracer plugin; a package declares"):
        manager.pipeline("pluggy")
    with pytest.raises(PluginError) as error:
        manager.pipeline("nothing_like_it")
    assert str(error.value) == "unknown pipeline 'nothing_like_it'; available: sentiment, tiny"


def test_hostile_trace_that_cannot_open_marks_the_created_run_failed(store: Store) -> None:
    import torch
    from torch import nn

    import tracer
    from tracer.plugins.pipeline import Pipeline

    @dataclass
    class Config:
        n: int = field(default=1, metadata={"help": "n"})

    shared = nn.Linear(2, 1)
    pipeline = Pipeline(
        "shared",
        "a model already traced",
        Config,
        lambda c: torch.ones(1, 2),
        lambda c: shared,
        lambda m, d, c, ctx: {},
        plugin="test",
    )
    manager = PluginManager.load(entry_points=False)
    with tracer.trace(shared), pytest.raises(RunFailed, match="already traced"):
        run_pipeline(pipeline, Config(), store=store, plugins=manager, device="cpu")
    [run] = store.list_runs()
    assert run.status == "failed" and "already traced" in (run.error or "")  # not left running
