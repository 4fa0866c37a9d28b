"""The plugin manager: built-ins, plugin files, entry points, blocking, typos and clashes."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tracer.plugins import hookspecs
from tracer.plugins.manager import PluginError, PluginManager
from tracer.plugins.markers import hookimpl

EXAMPLE = Path(__file__).parents[2] / "examples" / "cnn-demo"
PIPELINE_SOURCE = """
from dataclasses import dataclass, field
from tracer import hookimpl
from tracer.plugins.pipeline import Pipeline

@dataclass
class C:
    n: int = field(default=1, metadata={{"help": "n"}})

@hookimpl
def register_pipelines(register):
    register(Pipeline("{name}", "d", C, print, print, print))
"""


def test_manager_loads_builtin_plugins_through_the_hooks() -> None:
    manager = PluginManager.load(entry_points=False)
    assert {p.name: p.source for p in manager.plugins()} == {
        "sentiment": "built-in",
        "exporters": "built-in",
        "checks": "built-in",
    }
    assert manager.pipelines["sentiment"].plugin == "sentiment"
    assert set(manager.exporters) == {"json", "csv"}


def test_manager_builds_a_fresh_manager_per_call(tiny_plugin: Path) -> None:
    first = PluginManager.load([tiny_plugin], entry_points=False)
    second = PluginManager.load(entry_points=False)
    assert "tiny" in first.pipelines
    assert "tiny" not in second.pipelines


def test_manager_loads_a_plugin_file_and_remembers_the_plugin(tiny_plugin: Path) -> None:
    manager = PluginManager.load([tiny_plugin], entry_points=False)
    assert manager.pipelines["tiny"].plugin == "tiny_plugin"
    assert manager.tensor_stats["pos_frac"].plugin == "tiny_plugin"
    assert manager.exporters["txt"].plugin == "tiny_plugin"
    info = {p.name: p for p in manager.plugins()}["tiny_plugin"]
    assert info.source == str(tiny_plugin)
    assert "before_run" in info.hooks


def test_manager_plugin_file_that_fails_to_import_is_a_clear_error(write_plugin) -> None:
    path = write_plugin("broken", "import not_a_module_anywhere\n")
    with pytest.raises(PluginError, match=r"broken\.py failed to import: ModuleNotFoundError"):
        PluginManager.load([path], entry_points=False)


def test_manager_missing_plugin_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="does not exist"):
        PluginManager.load([tmp_path / "nope.py"], entry_points=False)


def test_manager_misspelled_hook_is_an_error(write_plugin) -> None:
    path = write_plugin(
        "typo",
        """
        from tracer import hookimpl

        @hookimpl
        def register_pipeline(register):
            pass
        """,
    )
    with pytest.raises(PluginError, match=r"'typo' implements an unknown hook.*register_pipeline"):
        PluginManager.load([path], entry_points=False)


def test_manager_hook_with_unknown_argument_is_an_error(write_plugin) -> None:
    path = write_plugin(
        "badargs",
        """
        from tracer import hookimpl

        @hookimpl
        def after_step(run, step, loss):
            pass
        """,
    )
    with pytest.raises(PluginError, match=r"'badargs'.*is invalid"):
        PluginManager.load([path], entry_points=False)


def test_manager_duplicate_pipeline_names_name_both_plugins(write_plugin) -> None:
    first = write_plugin("first", PIPELINE_SOURCE.format(name="same"))
    second = write_plugin("second", PIPELINE_SOURCE.format(name="same"))
    manager = PluginManager.load([first, second], entry_points=False)
    with pytest.raises(PluginError, match=r"'same'.*plugin 'first'.*plugin 'second'"):
        _ = manager.pipelines


def test_manager_duplicate_plugin_names_are_an_error(write_plugin, tmp_path: Path) -> None:
    path = write_plugin("dup", PIPELINE_SOURCE.format(name="one"))
    other = tmp_path / "sub"
    other.mkdir()
    copy = other / "dup.py"
    copy.write_text(path.read_text())
    with pytest.raises(PluginError, match="two plugins are named 'dup'"):
        PluginManager.load([path, copy], entry_points=False)


def test_manager_disable_env_blocks_builtin_and_file_plugins(tiny_plugin: Path) -> None:
    env = {"TRACER_DISABLE_PLUGINS": "sentiment, tiny_plugin"}
    manager = PluginManager.load([tiny_plugin], entry_points=False, env=env)
    assert "sentiment" not in manager.pipelines
    assert "tiny" not in manager.pipelines
    assert [p.name for p in manager.plugins()] == ["exporters", "checks"]


def test_manager_unknown_pipeline_lists_the_available_ones() -> None:
    manager = PluginManager.load(entry_points=False)
    with pytest.raises(PluginError, match="unknown pipeline 'nope'; available: sentiment"):
        manager.pipeline("nope")


def test_manager_refuses_a_pipeline_config_without_help(write_plugin) -> None:
    path = write_plugin(
        "nohelp",
        """
        from dataclasses import dataclass
        from tracer import hookimpl
        from tracer.plugins.pipeline import Pipeline

        @dataclass
        class C:
            n: int = 1

        @hookimpl
        def register_pipelines(register):
            register(Pipeline("p", "d", C, None, None, None))
        """,
    )
    manager = PluginManager.load([path], entry_points=False)
    with pytest.raises(PluginError, match=r"'nohelp'.*field 'n' of C has no help text"):
        _ = manager.pipelines


def test_manager_refuses_a_statistic_that_shadows_a_builtin(write_plugin) -> None:
    path = write_plugin(
        "shadow",
        """
        from tracer import hookimpl
        from tracer.plugins.pipeline import TensorStat

        @hookimpl
        def register_tensor_stats(register):
            register(TensorStat("mean", lambda t: 0.0))
        """,
    )
    with pytest.raises(PluginError, match="'mean' is built in"):
        _ = PluginManager.load([path], entry_points=False).tensor_stats


def test_manager_contribution_hook_that_raises_names_the_plugin(write_plugin) -> None:
    path = write_plugin(
        "raiser",
        """
        from tracer import hookimpl

        @hookimpl
        def register_exporters(register):
            raise RuntimeError("no exporters today")
        """,
    )
    with pytest.raises(PluginError, match=r"'raiser' failed in register_exporters.*today"):
        _ = PluginManager.load([path], entry_points=False).exporters


def _fake_distribution(site: Path, name: str, entry: str) -> None:
    """A dist-info folder advertising one entry point in the ``tracer`` group."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[tracer]\n{entry}\n")


def test_manager_loads_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(tmp_path, "tracer-cnn-demo", "cnn-demo = cnn_demo")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "cnn_demo", raising=False)
    manager = PluginManager.load()
    assert manager.pipelines["cnn"].plugin == "cnn-demo"
    assert {p.name: p.source for p in manager.plugins()}["cnn-demo"] == "tracer-cnn-demo 0.1.0"


def test_manager_entry_point_that_fails_to_import_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(tmp_path, "broken-plugin", "broken = no_such_module_here")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"'broken' \(broken-plugin 0.1.0\) failed to import"):
        PluginManager.load()
    monkeypatch.setenv("TRACER_DISABLE_PLUGINS", "broken")
    assert "sentiment" in PluginManager.load().pipelines


def test_manager_on_run_error_hook_failure_does_not_mask_the_error() -> None:
    class Loud:
        @hookimpl
        def on_run_error(self, error: BaseException) -> None:
            raise ValueError("hook broke")

    manager = PluginManager.load(entry_points=False)
    manager.register(Loud(), "loud", "test")
    with pytest.warns(UserWarning, match="'loud' failed in on_run_error"):
        manager.on_run_error(None, RuntimeError("original"))  # type: ignore[arg-type]


HOOKS = [
    name
    for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(f, "tracer_spec")
]


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspecs_every_hook_is_documented_and_tested(hook: str) -> None:
    spec: Callable = getattr(hookspecs, hook)
    assert spec.__doc__ and len(spec.__doc__.strip()) > 40, f"{hook} needs a docstring"
    tests = Path(__file__).parent.glob("test_*.py")
    text = "".join(p.read_text() for p in tests if p.name != Path(__file__).name)
    assert f"test_hook_{hook}" in text, f"no test named test_hook_{hook}_... for {hook}"


RULE_SOURCE = """
from tracer import hookimpl
from tracer.checks import Rule

def quiet(records, limits):
    return []

@hookimpl
def register_checks(register):
    register(Rule("{name}", "warning", "finds nothing", quiet))
"""


def test_manager_collects_rules_with_the_plugin_that_gave_them(write_plugin) -> None:
    manager = PluginManager.load([write_plugin("mine", RULE_SOURCE.format(name="mine"))])
    rules = manager.checks()
    assert rules["mine"].plugin == "mine"
    assert rules["nan"].plugin == "checks"
    assert next(iter(rules)) == "nan"  # the built-ins first


def test_manager_duplicate_rule_names_both_plugins(write_plugin) -> None:
    path = write_plugin("other", RULE_SOURCE.format(name="nan"))
    manager = PluginManager.load([path], entry_points=False)
    clash = "'nan' is registered twice in register_checks: by plugin 'checks' and by plugin 'other'"
    with pytest.raises(PluginError, match=clash):
        manager.checks()


NOT_A_RULE = """
from tracer import hookimpl

@hookimpl
def register_checks(register):
    register("nan")
"""


def test_manager_refuses_a_rule_that_is_not_a_rule(write_plugin) -> None:
    manager = PluginManager.load([write_plugin("bad", NOT_A_RULE)], entry_points=False)
    refused = "plugin 'bad': invalid contribution in register_checks: expected a Rule, got str"
    with pytest.raises(PluginError, match=refused):
        manager.checks()
