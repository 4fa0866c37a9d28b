"""Running a pipeline as a recorded run: create the run, trace training, finish it.

Shared by ``tracer run`` and the Python API. The first Ctrl-C asks the pipeline to stop after
its current step (the run ends ``interrupted`` with everything recorded so far); a second one
interrupts at once, with the same outcome.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tracer.plugins.config import INT64_MAX, ConfigError, check_config
from tracer.plugins.manager import PluginFailed, describe
from tracer.plugins.pipeline import (
    Pipeline,
    PipelineError,
    Progress,
    RunContext,
    build_model,
    config_dict,
)

if TYPE_CHECKING:
    import torch

    from tracer import distributed
    from tracer.checks.live import StepChecker
    from tracer.plugins.manager import PluginManager
    from tracer.records import RunInfo
    from tracer.store import Store


class RunFailed(Exception):
    """Training raised: the run is recorded as ``failed``; ``__cause__`` is the original error.

    ``who`` names the pipeline stage or plugin hook that raised; ``hook_errors`` holds one line
    per ``on_run_error`` hook that failed in turn.
    """

    def __init__(
        self,
        run: RunInfo,
        error: BaseException,
        who: str = "",
        hook_errors: Sequence[str] = (),
    ) -> None:
        text = f"run {run.id} ({run.name}) failed: {failure_text(who, error)}"
        super().__init__("; ".join([text, *(f"also {e}" for e in hook_errors)]))
        self.run = run
        self.error = error
        self.who = who
        self.hook_errors = list(hook_errors)


def failure_text(who: str, error: BaseException) -> str:
    """One line for a run's error: who failed (when known), the error's type and message."""
    return f"{who}: {describe(error)}" if who else describe(error)


@dataclass
class RunResult:
    """How a run ended: its final record, status, last metrics and duration."""

    run: RunInfo
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    duration_s: float = 0.0


def resolve_device(name: str | None) -> torch.device:
    """``auto`` (or None) picks CUDA when available, else the CPU; anything else is parsed."""
    import torch

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (try auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def _with_source(tags: Mapping[str, str] | None, data: Any) -> dict[str, str]:
    """The run's tags plus ``data``: where the data came from, when the pipeline says so."""
    source = getattr(data, "source", None)
    return {**(tags or {}), **({"data": str(source)} if source else {})}


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators so a run can be repeated."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def with_seed(config: Any, seed: int | None) -> tuple[Any, int]:
    """The config with ``seed`` applied (when it has a ``seed`` field) and the seed in effect."""
    has_seed = any(f.name == "seed" for f in dataclasses.fields(config))
    if seed is None:
        return config, int(getattr(config, "seed", 0)) if has_seed else 0
    return (dataclasses.replace(config, seed=seed) if has_seed else config), seed


@contextmanager
def stop_on_interrupt(ctx: RunContext) -> Iterator[None]:
    """First Ctrl-C: ask the pipeline to stop after this step; second: interrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if ctx.should_stop:
            raise KeyboardInterrupt
        ctx.request_stop()
        ctx.progress.print("stopping after this step (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class RunOptions:
    """How a pipeline run is traced and recorded; checked once, when built."""

    name: str | None = None
    every: int = 10
    ops: bool = True
    grads: bool = False
    device: str | None = "auto"
    seed: int | None = None
    tags: Mapping[str, str] | None = None
    command: str | None = None
    #: Check each traced step as it is written and print the run's first error at once.
    check: bool = False

    def __post_init__(self) -> None:
        check_options(self)
        if self.tags is not None:
            # a copy of its own: a caller's later edits never reach the recorded run
            object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))


@dataclass(frozen=True)
class RunPlan:
    """What one run trains: the pipeline, its checked config, the seed in effect, the options."""

    pipeline: Pipeline
    config: Any
    seed: int
    options: RunOptions
    plugins: PluginManager
    extra_stats: Mapping[str, Callable[[Any], float]]


def plan_run(
    pipeline: Pipeline, config: Any, options: RunOptions, plugins: PluginManager
) -> RunPlan:
    """Check the config, apply the seed and collect the plugins, before the database is touched."""
    if not isinstance(config, pipeline.config_cls):
        raise ConfigError(
            f"config must be a {pipeline.config_cls.__name__}, got {type(config).__name__}"
        )
    check_config(config)
    config, seed = with_seed(config, options.seed)
    plugins.collect_all()  # clashing contributions are refused before the run exists
    extra = {stat_name: stat.fn for stat_name, stat in plugins.tensor_stats.items()}
    return RunPlan(pipeline, config, seed, options, plugins, MappingProxyType(extra))


@contextmanager
def open_job(
    device: str | None, store: Store | Callable[[], Store]
) -> Iterator[tuple[distributed.Job, Store]]:
    """This process's part in the job (under torchrun: its process group) and the run store.

    The one place a run's job is opened, for ``tracer run`` and the Python API alike. ``store``
    is an open store (kept open; its connections are released before the teardown) or how to
    open one (rank 0 opens it first, so a new schema is created once; closed on the way out).
    """
    from tracer import distributed
    from tracer.store import Store

    with distributed.session(resolve_device(device)) as job:
        if isinstance(store, Store):
            opened = store
            if job.where.distributed:
                job.on_exit(opened.engine.dispose)
        else:
            opened = distributed.main_first(store)
            job.on_exit(opened.close)
        yield job, opened


def run_pipeline(
    pipeline: Pipeline,
    config: Any,
    *,
    store: Store,
    plugins: PluginManager,
    name: str | None = None,
    every: int = 10,
    ops: bool = True,
    grads: bool = False,
    device: str | None = "auto",
    seed: int | None = None,
    progress: Progress | None = None,
    command: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunResult:
    """Build data and model, create the run, train under a trace into the store, finish it."""
    options = RunOptions(
        name=name,
        every=every,
        ops=ops,
        grads=grads,
        device=device,
        seed=seed,
        tags=tags,
        command=command,
    )
    plan = plan_run(pipeline, config, options, plugins)
    # under torchrun: process group up, SIGTERM handled, clean teardown when the run is over
    with open_job(options.device, store) as (job, opened):
        return run_in_job(plan, job, opened, progress=progress)


def check_options(options: RunOptions) -> None:
    """Refuse run options of the wrong type or range with a :class:`ValueError` naming them."""
    every, seed = options.every, options.seed
    if not _is_int(every) or not 1 <= every <= INT64_MAX:
        raise ValueError(f"every must be an integer of at least 1, got {every!r}")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= INT64_MAX):
        raise ValueError(f"seed must be an integer from 0 to {INT64_MAX}, got {seed!r}")
    for flag, value in (("ops", options.ops), ("grads", options.grads), ("check", options.check)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be True or False, got {value!r}")
    for key, text in (("name", options.name), ("command", options.command)):
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{key} must be a string, got {text!r}")
    if options.device is not None and not isinstance(options.device, str):
        raise ValueError(f"device must be a string such as 'cpu', got {options.device!r}")
    tags = options.tags
    if tags is not None and (
        not isinstance(tags, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise ValueError(f"tags must map strings to strings, got {tags!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _who(pipeline: Pipeline, stage: str) -> str:
    """Names a pipeline stage for an error: ``pipeline 'x' (plugin 'y') failed in train``."""
    plugin = f" (plugin {pipeline.plugin!r})" if pipeline.plugin else ""
    return f"pipeline {pipeline.name!r}{plugin} failed in {stage}"


def _blame(exc: BaseException, pipeline: Pipeline, stage: str) -> tuple[str, BaseException]:
    """Who raised ``exc`` (a plugin hook inside the stage, else the stage) and the original."""
    from tracer.store import StoreError

    if isinstance(exc, PluginFailed):
        return exc.who, exc.error
    if isinstance(exc, StoreError):  # the database failed (a full disk), not the pipeline
        return "", exc
    return _who(pipeline, stage), exc


def _before_run(pipeline: Pipeline, stage: str, call: Any, *args: Any) -> Any:
    """Call a stage that runs before the run exists; an unexpected error names the pipeline."""
    try:
        return call(*args)
    except (KeyboardInterrupt, PipelineError, ConfigError):
        raise  # a pipeline's own message to the user, or Ctrl-C
    except BaseException as exc:  # SystemExit too: never a silent exit
        raise PluginFailed(_who(pipeline, stage), exc, "no run was created") from exc


def _build(plan: RunPlan, torch_device: Any) -> tuple[Any, Any]:
    """The pipeline's data and (placed, DDP-wrapped) model, checked before any run exists."""
    from torch import nn

    from tracer import distributed

    pipeline, config = plan.pipeline, plan.config
    data = _before_run(pipeline, "data", pipeline.data, config)
    model = _before_run(pipeline, "model", build_model, pipeline, config, data)
    if not isinstance(model, nn.Module):
        raise PluginFailed(
            _who(pipeline, "model"),
            TypeError(f"it returned {type(model).__name__}, not a torch.nn.Module"),
            "no run was created",
        )
    model = _before_run(pipeline, "model", model.to, torch_device)
    # DDP when in a job; each rank traces its replica
    return data, _before_run(pipeline, "model", distributed.wrap, model, torch_device)


def run_in_job(
    plan: RunPlan, job: distributed.Job, store: Store, *, progress: Progress | None = None
) -> RunResult:
    """The run itself, inside :func:`open_job`; the (DDP) model is released when this returns."""
    seed_everything(plan.seed)
    data, model = _build(plan, job.device)
    run = _create_run(plan, job, store, data)

    checker = _step_checker(plan, store, run)

    def on_step(step: int, metrics: Mapping[str, float]) -> None:
        if metrics:
            ctx.progress.status("  ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:3]))
        if checker is not None and step % plan.options.every == 0:
            _print_first_error(ctx, checker, step)
        plan.plugins.after_step(run, step, metrics)

    ctx = RunContext(None, device=job.device, progress=progress, on_step=on_step)
    started = time.perf_counter()
    status = _train(plan, _Recording(store, run, model, data), ctx)
    final = store.get_run(run.id)
    result = RunResult(final, status, dict(ctx.metrics), ctx.steps, time.perf_counter() - started)
    try:
        plan.plugins.after_run(final, status, dict(ctx.metrics))
    except PluginFailed as exc:
        failure = PluginFailed(
            exc.who, exc.error, f"run {final.id} ({final.name}) itself {status}; it is kept"
        )
        failure.result = result
        raise failure from exc.error
    return result


def _step_checker(plan: RunPlan, store: Store, run: RunInfo) -> StepChecker | None:
    """With ``check``: the checker that reads each traced step back as it is written."""
    if not plan.options.check:
        return None
    from tracer.checks.live import StepChecker

    return StepChecker(store, run, list(plan.plugins.checks().values()))


def _print_first_error(ctx: RunContext, checker: StepChecker, step: int) -> None:
    """Print the run's first error the moment its step is written."""
    from rich.markup import escape

    from tracer.formatting import literal

    found = checker.new_error(step)
    if found is not None:
        text = f"error at step {step}: {found.rule}: {literal(found.message, 500)}"
        ctx.progress.print(f"[bold red]{escape(text)}[/]")


def _create_run(plan: RunPlan, job: distributed.Job, store: Store, data: Any) -> RunInfo:
    """The run's row: the pipeline, config, seed and tags, this rank's place in the job."""
    import torch

    from tracer import distributed

    return store.create_run(
        name=plan.options.name or plan.pipeline.name,
        pipeline=plan.pipeline.name,
        config=config_dict(plan.config),
        seed=plan.seed,
        tags=_with_source(plan.options.tags, data),
        device=str(job.device),
        torch_version=torch.__version__,
        rank=job.where.rank,
        world_size=job.where.world_size,
        group_id=distributed.group_id(),
        command=plan.options.command,
    )


@dataclass(frozen=True)
class _Recording:
    """One created run being trained: where it is recorded, the model and its data."""

    store: Store
    run: RunInfo
    model: Any
    data: Any


def _train(plan: RunPlan, rec: _Recording, ctx: RunContext) -> str:
    """Train under a trace into the run's writer; returns the run's final status."""
    import tracer
    from tracer.distributed import unwrap

    pipeline, plugins, options = plan.pipeline, plan.plugins, plan.options
    status = "completed"
    who, stage = "", "before_run"
    try:
        with (
            stop_on_interrupt(ctx),
            tracer.trace(
                unwrap(rec.model),
                sink=rec.store.writer(rec.run.id),
                every=options.every,
                ops=options.ops,
                grads=options.grads,
                extra_stats=plan.extra_stats,
            ) as t,
        ):
            ctx.bind(t)
            try:
                plugins.before_run(rec.run, pipeline, plan.config)
                stage = "train"
                final = pipeline.train(rec.model, rec.data, plan.config, ctx)
                if final:
                    ctx.metrics.update({k: float(v) for k, v in final.items()})
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: the run fails, the command says why
                who, error = _blame(exc, pipeline, stage)
                # the run's recorded error: one line naming who failed, no C++ backtrace
                t.close("failed", failure_text(who, error), quiet=True)
                raise
            if ctx.should_stop:
                status = "interrupted"
                t.close("interrupted", "stopped by the user")
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException as exc:
        original = exc.error if isinstance(exc, PluginFailed) and who else exc
        failed = _finish_failed(rec.store, rec.run, who, original)
        notes = plugins.on_run_error(failed, original, warn=False)
        raise RunFailed(failed, original, who, notes) from original
    return status


def _finish_failed(store: Store, run: RunInfo, who: str, error: BaseException) -> RunInfo:
    """The failed run, marked failed here when the trace never opened (it marks its own)."""
    from tracer.store import StoreError

    try:
        if store.get_run(run.id).status == "running":
            store.finish_run(run.id, "failed", failure_text(who, error))
        return store.get_run(run.id)
    except StoreError:  # the database itself failed (a full disk): report the run as it was
        return run


def run(
    pipeline: str,
    *,
    db: str | None = None,
    sets: Sequence[str] = (),
    config_file: str | os.PathLike[str] | None = None,
    plugin_files: Sequence[str | os.PathLike[str]] = (),
    progress: Progress | None = None,
    **options: Any,
) -> RunResult:
    """The Python face of ``tracer run``: ``run("sentiment", sets=["hidden_dim=256"])``.

    ``options`` are the fields of :class:`RunOptions` (``name``, ``every``, ``ops``, ``grads``,
    ``device``, ``seed``, ``tags``, ``command``).
    """
    from pathlib import Path

    from tracer.plugins.config import build_config
    from tracer.plugins.manager import PluginManager
    from tracer.store import open_store

    if isinstance(sets, (str, bytes)):
        raise ValueError(f"sets must be a list of 'key=value' strings, got {sets!r}")
    plugins = PluginManager.load([Path(p) for p in plugin_files])
    found = plugins.pipeline(pipeline)
    path = Path(config_file) if config_file is not None else None
    config = build_config(found.config_cls, sets, path, section=found.name)
    plan = plan_run(found, config, RunOptions(**options), plugins)
    with open_job(plan.options.device, lambda: open_store(db)) as (job, store):
        return run_in_job(plan, job, store, progress=progress)
