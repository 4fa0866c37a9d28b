"""The hooks a tracer plugin can implement, grouped by when they are called.

Implement one with ``from tracer import hookimpl`` and a function of the same name; a plugin may
accept any subset of a hook's arguments. The manager calls every hook once per plugin, in the
order plugins were loaded (built-ins, then entry points, then ``--plugin`` files). pluggy is
never called per tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracer.plugins.markers import hookspec

if TYPE_CHECKING:
    from tracer.checks.rules import Rule
    from tracer.plugins.pipeline import Exporter, Pipeline, TensorStat
    from tracer.records import RunInfo

# --- contributions: called once per invocation, when the manager is built -------------------


@hookspec
def register_pipelines(register: Callable[[Pipeline], None]) -> None:
    """Contribute pipelines by calling ``register(Pipeline(...))`` once per pipeline.

    Called once, when the plugin manager is built. The pipeline's name must be unique across all
    plugins: a second pipeline with the same name is an error naming both plugins. The config
    class is checked at registration (a dataclass, every field with a default and a help text).
    """


@hookspec
def register_tensor_stats(register: Callable[[TensorStat], None]) -> None:
    """Contribute extra per-tensor statistics with ``register(TensorStat(name, fn))``.

    Called once, when the plugin manager is built. ``fn(tensor) -> float`` runs inside the
    tracing core's statistics pass on every recorded floating-point tensor, so keep it to one
    cheap reduction. Names must not clash with the built-in statistics or another plugin's.
    """


@hookspec
def register_exporters(register: Callable[[Exporter], None]) -> None:
    """Contribute run exporters with ``register(Exporter(name, description, export))``.

    Called once, when the plugin manager is built. ``tracer export RUN --format NAME`` calls
    ``export(store, run_id, path)``. A duplicate exporter name is an error naming both plugins.
    """


@hookspec
def register_checks(register: Callable[[Rule], None]) -> None:
    """Contribute rules for ``tracer check``: ``register(Rule(name, severity, summary, check))``.

    Called once, when the plugin manager is built (the built-in rules come through this hook
    too). ``check(records, limits)`` is a plain function over a run's stored records
    (:class:`tracer.checks.RunRecords`: each checked step's flow, each layer across steps) that
    yields :class:`tracer.checks.Finding` objects; it must not import torch, so a check runs
    wherever the database opens. A stored run's flows are read as a rule asks for them: a rule
    that looks at every step should read the cheap views (``records.skeleton``, the calls
    without tensors; ``records.values(roles, fields)``; ``records.facts``) and the flows of the
    steps it needs (``records.flows_at``). A duplicate rule name is an error naming both plugins.
    """


# --- lifecycle: called during ``tracer run`` / :func:`tracer.plugins.runner.run_pipeline` ----
# Called plugin by plugin (so they cannot be hook wrappers): an exception, or ``sys.exit``,
# in one of them is reported naming that plugin.


@hookspec
def before_run(run: RunInfo, pipeline: Pipeline, config: Any) -> None:
    """Called once per run, after the run is created and the model built, before training.

    If it raises (or calls ``sys.exit``) the run is marked ``failed`` and the error names the
    plugin.
    """


@hookspec
def after_step(run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
    """Called after every training step (each ``ctx.step()``) with the metrics logged in it.

    If it raises, the run fails naming the plugin; the steps recorded before are kept.
    """


@hookspec
def after_run(run: RunInfo, status: str, metrics: Mapping[str, float]) -> None:
    """Called once when a run ends: ``status`` is ``completed`` or ``interrupted``.

    ``metrics`` holds the last value of every metric logged during the run. If it raises, the
    error names the plugin and says the run itself finished; the run keeps its status.
    """


@hookspec
def on_run_error(run: RunInfo, error: BaseException) -> None:
    """Called once when a run fails with an exception (the run is already marked ``failed``).

    The error is re-raised after every plugin has seen it; a hook's own exception is added to
    the reported error (naming the plugin) and does not mask it.
    """
