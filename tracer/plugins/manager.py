"""The plugin manager: built fresh per invocation from built-ins, entry points and plugin files."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from tracer.plugins import hookspecs
from tracer.plugins.config import ConfigError, config_fields
from tracer.plugins.markers import PROJECT
from tracer.plugins.pipeline import Exporter, Pipeline, TensorStat
from tracer.records import BUILTIN_STATS, RunInfo

ENTRY_POINT_GROUP = "tracer"
DISABLE_ENV = "TRACER_DISABLE_PLUGINS"
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("sentiment", "tracer.plugins.builtin.sentiment"),
    ("exporters", "tracer.plugins.builtin.exporters"),
)


class PluginError(Exception):
    """A plugin that cannot be loaded, or contributions that clash."""


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name, where it came from and the hooks it implements."""

    name: str
    source: str
    hooks: tuple[str, ...]


def disabled_from_env(env: Mapping[str, str] | None = None) -> set[str]:
    """Plugin names listed (comma-separated) in ``TRACER_DISABLE_PLUGINS``."""
    raw = (os.environ if env is None else env).get(DISABLE_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_plugin_file(path: Path) -> ModuleType:
    """Import a Python file as a module (for ``--plugin path/to/file.py``)."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist")
    module_name = f"tracer_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses and typing look the module up by name.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(f"plugin file {path} failed to import: {_describe(exc)}") from exc
    return module


def _describe(exc: BaseException) -> str:
    """One line for an exception: its type and message."""
    return f"{type(exc).__name__}: {exc}"


class PluginManager:
    """A typed facade over a pluggy manager: loading, contributions and lifecycle hooks."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled)
        for name in self.disabled:
            self.pm.set_blocked(name)
        self._sources: dict[str, str] = {}
        self._cache: dict[str, dict[str, Any]] = {}

    @classmethod
    def load(
        cls,
        plugin_files: Iterable[Path | str] = (),
        *,
        entry_points: bool = True,
        builtins: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> PluginManager:
        """Build a manager: built-ins, then the ``tracer`` entry points, then plugin files."""
        manager = cls(disabled_from_env(env))
        if builtins:
            manager.load_builtins()
        if entry_points:
            manager.load_entry_points()
        for path in plugin_files:
            manager.load_file(Path(path))
        manager.check()
        return manager

    def register(self, plugin: object, name: str, source: str) -> None:
        """Register one plugin object under ``name``, turning pluggy's errors into ours."""
        if name in self.disabled:
            return
        if name in self._sources:
            raise PluginError(f"two plugins are named {name!r}: {self._sources[name]} and {source}")
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} ({source}) is invalid: {exc}") from exc
        self._sources[name] = source
        self._cache.clear()

    def load_builtins(self) -> None:
        """Register the plugins shipped with tracer."""
        for name, module in BUILTIN_PLUGINS:
            if name not in self.disabled:
                self.register(importlib.import_module(module), name, "built-in")

    def load_entry_points(self) -> None:
        """Register every plugin advertised in the ``tracer`` entry-point group."""
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self.disabled:
                continue
            dist = getattr(ep, "dist", None)
            source = f"{dist.name} {dist.version}" if dist else f"entry point {ep.value}"
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({source}) failed to import: {_describe(exc)}"
                ) from exc
            self.register(plugin, ep.name, source)

    def load_file(self, path: Path) -> None:
        """Register a plain Python file as a plugin named after the file."""
        self.register(load_plugin_file(path), path.stem, str(path))

    def check(self) -> None:
        """Fail on hook implementations whose name matches no hook (usually a typo)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or "?"
            raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin, in load order."""
        infos = []
        for name, source in self._sources.items():
            plugin = self.pm.get_plugin(name)
            hooks = tuple(h.name for h in self.pm.get_hookcallers(plugin) or ())
            infos.append(PluginInfo(name, source, tuple(sorted(hooks))))
        return infos

    # --- contributions ----------------------------------------------------------------------

    def _collect(self, hook: str, check: Callable[[Any], None]) -> dict[str, Any]:
        """Call one contribution hook plugin by plugin; items remember their plugin."""
        if hook in self._cache:
            return self._cache[hook]
        items: dict[str, Any] = {}
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            plugin = impl.plugin_name

            def register(item: Any, _plugin: str = plugin) -> None:
                self._add(items, hook, item, _plugin, check)

            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {plugin!r} failed in {hook}: {_describe(exc)}") from exc
        self._cache[hook] = items
        return items

    @staticmethod
    def _add(items: dict[str, Any], hook: str, item: Any, plugin: str, check: Callable) -> None:
        """Validate one contribution and add it, refusing a name another plugin already used."""
        try:
            check(item)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"plugin {plugin!r}: invalid contribution in {hook}: {exc}") from exc
        previous = items.get(item.name)
        if previous is not None:
            raise PluginError(
                f"{item.name!r} is registered twice in {hook}: by plugin {previous.plugin!r} "
                f"and by plugin {plugin!r}"
            )
        items[item.name] = dataclasses.replace(item, plugin=plugin)

    @property
    def pipelines(self) -> dict[str, Pipeline]:
        """Every registered pipeline by name."""
        return self._collect("register_pipelines", _check_pipeline)

    @property
    def tensor_stats(self) -> dict[str, TensorStat]:
        """Every extra tensor statistic by name."""
        return self._collect("register_tensor_stats", _check_stat)

    @property
    def exporters(self) -> dict[str, Exporter]:
        """Every registered exporter by name."""
        return self._collect("register_exporters", _check_exporter)

    def pipeline(self, name: str) -> Pipeline:
        """The pipeline called ``name``; the error lists the available ones."""
        pipelines = self.pipelines
        if name not in pipelines:
            known = ", ".join(sorted(pipelines)) or "none"
            raise PluginError(f"unknown pipeline {name!r}; available: {known}")
        return pipelines[name]

    # --- lifecycle --------------------------------------------------------------------------

    def before_run(self, run: RunInfo, pipeline: Pipeline, config: Any) -> None:
        """Tell plugins a run starts."""
        self.pm.hook.before_run(run=run, pipeline=pipeline, config=config)

    def after_step(self, run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
        """Tell plugins a training step ended."""
        self.pm.hook.after_step(run=run, step=step, metrics=metrics)

    def after_run(self, run: RunInfo, status: str, metrics: Mapping[str, float]) -> None:
        """Tell plugins a run ended without an error."""
        self.pm.hook.after_run(run=run, status=status, metrics=metrics)

    def on_run_error(self, run: RunInfo, error: BaseException) -> None:
        """Tell every plugin a run failed; a failing hook is reported, never masks ``error``."""
        for impl in self.pm.hook.on_run_error.get_hookimpls():
            args = {"run": run, "error": error}
            try:
                impl.function(**{a: args[a] for a in impl.argnames})
            except Exception as exc:
                warnings.warn(
                    f"plugin {impl.plugin_name!r} failed in on_run_error: {_describe(exc)}",
                    stacklevel=2,
                )


def _check_pipeline(item: Any) -> None:
    """Refuse anything that is not a usable :class:`Pipeline`."""
    if not isinstance(item, Pipeline):
        raise TypeError(f"expected a Pipeline, got {type(item).__name__}")
    if not item.name:
        raise ValueError("a pipeline needs a name")
    try:
        config_fields(item.config_cls)
    except ConfigError as exc:
        raise ValueError(f"pipeline {item.name!r}: {exc}") from None


def _check_stat(item: Any) -> None:
    """Refuse anything that is not a :class:`TensorStat` or that shadows a built-in statistic."""
    if not isinstance(item, TensorStat):
        raise TypeError(f"expected a TensorStat, got {type(item).__name__}")
    if item.name in BUILTIN_STATS:
        raise ValueError(f"statistic {item.name!r} is built in")


def _check_exporter(item: Any) -> None:
    """Refuse anything that is not an :class:`Exporter`."""
    if not isinstance(item, Exporter):
        raise TypeError(f"expected an Exporter, got {type(item).__name__}")
