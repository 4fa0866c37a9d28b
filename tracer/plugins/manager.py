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
from typing import TYPE_CHECKING, Any

import pluggy

from tracer.plugins import hookspecs
from tracer.plugins.config import ConfigError, config_fields
from tracer.plugins.hints import unknown_pipeline_hint
from tracer.plugins.markers import PROJECT
from tracer.plugins.pipeline import Exporter, Pipeline, TensorStat
from tracer.records import BUILTIN_STATS, RunInfo

if TYPE_CHECKING:
    from tracer.checks.rules import Rule

ENTRY_POINT_GROUP = "tracer"
DISABLE_ENV = "TRACER_DISABLE_PLUGINS"
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("sentiment", "tracer.plugins.builtin.sentiment"),
    ("exporters", "tracer.plugins.builtin.exporters"),
    ("checks", "tracer.plugins.builtin.checks"),
)


class PluginError(Exception):
    """A plugin that cannot be loaded, or contributions that clash."""


class PluginFailed(PluginError):
    """A plugin's code raised while it ran: ``who`` names the plugin (and pipeline stage).

    ``error`` is the original exception (also ``__cause__``); ``note`` says what became of the
    run; ``result`` is the finished run's result when only ``after_run`` failed.
    """

    def __init__(self, who: str, error: BaseException, note: str = "") -> None:
        text = f"{who}: {describe(error)}"
        super().__init__(f"{text} ({note})" if note else text)
        self.who = who
        self.error = error
        self.note = note
        self.result: Any = None


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
    except KeyboardInterrupt:
        del sys.modules[module_name]
        raise
    except BaseException as exc:  # SystemExit too: a plugin must not end the command silently
        del sys.modules[module_name]
        raise PluginError(f"plugin file {path} failed to import: {describe(exc)}") from exc
    return module


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without the C++ backtrace torch appends."""
    try:
        text = str(exc)
    except Exception:  # a hostile __str__ must not hide the error it describes
        text = "(the error's message could not be read)"
    for marker in ("\nException raised from ", "\nframe #"):
        text = text.split(marker, 1)[0]
    if text.startswith("frame #"):
        text = ""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def describe(exc: BaseException) -> str:
    """One line for an exception: its type and message (``sys.exit`` said as such)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    message = one_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


#: Lifecycle hooks: called one plugin at a time, so that a failure names its plugin.
LIFECYCLE_HOOKS = ("before_run", "after_step", "after_run", "on_run_error")


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
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: never a silent exit
                raise PluginError(
                    f"plugin {ep.name!r} ({source}) failed to import: {describe(exc)}"
                ) from exc
            self.register(plugin, ep.name, source)

    def load_file(self, path: Path) -> None:
        """Register a plain Python file as a plugin named after the file."""
        self.register(load_plugin_file(path), path.stem, str(path))

    def check(self) -> None:
        """Fail on unknown hooks (usually a typo) and on lifecycle hooks declared as wrappers."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or "?"
            raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc
        for hook in LIFECYCLE_HOOKS:
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                if impl.hookwrapper or impl.wrapper:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {hook} cannot be a hook wrapper "
                        "(lifecycle hooks are called plugin by plugin)"
                    )

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
            except (PluginError, KeyboardInterrupt):
                raise
            except BaseException as exc:  # SystemExit too: never a silent exit
                raise PluginError(f"plugin {plugin!r} failed in {hook}: {describe(exc)}") from exc
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

    def checks(self) -> dict[str, Rule]:
        """Every rule for ``tracer check`` by name, the built-in ones first."""
        return self._collect("register_checks", _check_rule)

    def collect_all(self) -> None:
        """Collect every contribution now: a clash or a bad one fails before anything starts."""
        for hook, check in (
            ("register_pipelines", _check_pipeline),
            ("register_tensor_stats", _check_stat),
            ("register_exporters", _check_exporter),
            ("register_checks", _check_rule),
        ):
            self._collect(hook, check)

    def pipeline(self, name: str) -> Pipeline:
        """The pipeline called ``name``; the error lists the available ones, with a hint."""
        pipelines = self.pipelines
        if name not in pipelines:
            known = ", ".join(sorted(pipelines)) or "none"
            hint = unknown_pipeline_hint(name, self)
            raise PluginError(
                f"unknown pipeline {name!r}; available: {known}" + (f". {hint}" if hint else "")
            )
        return pipelines[name]

    # --- lifecycle --------------------------------------------------------------------------

    def _call_each(self, hook: str, **kwargs: Any) -> None:
        """Call a lifecycle hook plugin by plugin (pluggy's order); a failure names its plugin."""
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames})
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: never a silent exit
                raise PluginFailed(f"plugin {impl.plugin_name!r} failed in {hook}", exc) from exc

    def before_run(self, run: RunInfo, pipeline: Pipeline, config: Any) -> None:
        """Tell plugins a run starts."""
        self._call_each("before_run", run=run, pipeline=pipeline, config=config)

    def after_step(self, run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
        """Tell plugins a training step ended."""
        self._call_each("after_step", run=run, step=step, metrics=metrics)

    def after_run(self, run: RunInfo, status: str, metrics: Mapping[str, float]) -> None:
        """Tell plugins a run ended without an error."""
        self._call_each("after_run", run=run, status=status, metrics=metrics)

    def on_run_error(self, run: RunInfo, error: BaseException, *, warn: bool = True) -> list[str]:
        """Tell every plugin a run failed; a failing hook never masks ``error``.

        Returns one line per hook that failed; ``warn`` also reports each as a warning.
        """
        failures = []
        for impl in reversed(self.pm.hook.on_run_error.get_hookimpls()):
            args = {"run": run, "error": error}
            try:
                impl.function(**{a: args[a] for a in impl.argnames})
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: the run's own error comes first
                failures.append(
                    f"plugin {impl.plugin_name!r} failed in on_run_error: {describe(exc)}"
                )
                if warn:
                    warnings.warn(failures[-1], stacklevel=2)
        return failures


def _check_pipeline(item: Any) -> None:
    """Refuse anything that is not a usable :class:`Pipeline`."""
    if not isinstance(item, Pipeline):
        raise TypeError(f"expected a Pipeline, got {type(item).__name__}")
    if not isinstance(item.name, str) or not item.name.strip():
        raise ValueError("a pipeline needs a name")
    try:
        config_fields(item.config_cls)
    except ConfigError as exc:
        raise ValueError(f"pipeline {item.name!r}: {exc}") from None
    for part in ("data", "model", "train"):
        if not callable(getattr(item, part)):
            raise TypeError(f"pipeline {item.name!r}: {part} must be callable")


def _check_stat(item: Any) -> None:
    """Refuse anything that is not a :class:`TensorStat` or that shadows a built-in statistic."""
    if not isinstance(item, TensorStat):
        raise TypeError(f"expected a TensorStat, got {type(item).__name__}")
    # the checks tracer.core.stats.validate_stat makes when a trace opens (that module needs torch),
    # made here so that a bad statistic is refused before any run exists
    if not isinstance(item.name, str) or not item.name.isidentifier():
        raise ValueError(f"statistic name must be an identifier, got {item.name!r}")
    if item.name in BUILTIN_STATS or item.name == "true_frac":
        raise ValueError(f"statistic {item.name!r} is built in")
    if not callable(item.fn):
        raise TypeError(f"statistic {item.name!r} must be callable, got {type(item.fn).__name__}")


def _check_exporter(item: Any) -> None:
    """Refuse anything that is not an :class:`Exporter`."""
    if not isinstance(item, Exporter):
        raise TypeError(f"expected an Exporter, got {type(item).__name__}")


def _check_rule(item: Any) -> None:
    """Refuse anything that is not a :class:`~tracer.checks.rules.Rule` (checked when built)."""
    from tracer.checks.rules import Rule

    if not isinstance(item, Rule):
        raise TypeError(f"expected a Rule, got {type(item).__name__}")
