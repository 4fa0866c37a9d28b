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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    from tracer import distributed

    check_options(name=name, every=every, ops=ops, grads=grads, device=device, seed=seed, tags=tags)
    if not isinstance(config, pipeline.config_cls):
        raise ConfigError(
            f"config must be a {pipeline.config_cls.__name__}, got {type(config).__name__}"
        )
    check_config(config)
    config, seed = with_seed(config, seed)
    plugins.collect_all()  # clashing contributions are refused before the run exists
    extra = {stat_name: stat.fn for stat_name, stat in plugins.tensor_stats.items()}
    # under torchrun: process group up, SIGTERM handled, clean teardown when the run is over
    with distributed.session(resolve_device(device)) as job:
        if job.where.distributed:
            job.on_exit(store.engine.dispose)
        return _run_in_job(
            pipeline,
            config,
            job,
            store=store,
            plugins=plugins,
            name=name,
            seed=seed,
            options={"every": every, "ops": ops, "grads": grads, "extra_stats": extra},
            progress=progress,
            command=command,
            tags=tags,
        )


def check_options(**options: Any) -> None:
    """Refuse run options of the wrong type or range with a :class:`ValueError` naming them."""
    every, seed = options["every"], options["seed"]
    if not _is_int(every) or not 1 <= every <= INT64_MAX:
        raise ValueError(f"every must be an integer of at least 1, got {every!r}")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= INT64_MAX):
        raise ValueError(f"seed must be an integer from 0 to {INT64_MAX}, got {seed!r}")
    for flag in ("ops", "grads"):
        if not isinstance(options[flag], bool):
            raise ValueError(f"{flag} must be True or False, got {options[flag]!r}")
    if options["name"] is not None and not isinstance(options["name"], str):
        raise ValueError(f"name must be a string, got {options['name']!r}")
    if options["device"] is not None and not isinstance(options["device"], str):
        raise ValueError(f"device must be a string such as 'cpu', got {options['device']!r}")
    tags = options["tags"]
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


def _build(pipeline: Pipeline, config: Any, torch_device: Any) -> tuple[Any, Any]:
    """The pipeline's data and (placed, DDP-wrapped) model, checked before any run exists."""
    from torch import nn

    from tracer import distributed

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


def _run_in_job(
    pipeline: Pipeline,
    config: Any,
    job: distributed.Session,
    *,
    store: Store,
    plugins: PluginManager,
    name: str | None,
    seed: int,
    options: Mapping[str, Any],
    progress: Progress | None,
    command: str | None,
    tags: Mapping[str, str] | None,
) -> RunResult:
    """The run itself; the (DDP) model is released when this returns, before the teardown."""
    import torch

    from tracer import distributed

    torch_device = job.device
    seed_everything(seed)
    data, model = _build(pipeline, config, torch_device)
    run = store.create_run(
        name=name or pipeline.name,
        pipeline=pipeline.name,
        config=config_dict(config),
        seed=seed,
        tags=_with_source(tags, data),
        device=str(torch_device),
        torch_version=torch.__version__,
        rank=job.where.rank,
        world_size=job.where.world_size,
        group_id=distributed.group_id(),
        command=command,
    )

    def on_step(step: int, metrics: Mapping[str, float]) -> None:
        if metrics:
            ctx.progress.status("  ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:3]))
        plugins.after_step(run, step, metrics)

    ctx = RunContext(None, device=torch_device, progress=progress, on_step=on_step)
    started = time.perf_counter()
    status = _train(pipeline, model, data, config, ctx, store, run, plugins, options)
    final = store.get_run(run.id)
    result = RunResult(final, status, dict(ctx.metrics), ctx.steps, time.perf_counter() - started)
    try:
        plugins.after_run(final, status, dict(ctx.metrics))
    except PluginFailed as exc:
        failure = PluginFailed(
            exc.who, exc.error, f"run {final.id} ({final.name}) itself {status}; it is kept"
        )
        failure.result = result
        raise failure from exc.error
    return result


def _train(
    pipeline: Pipeline,
    model: Any,
    data: Any,
    config: Any,
    ctx: RunContext,
    store: Store,
    run: RunInfo,
    plugins: PluginManager,
    options: Mapping[str, Any],
) -> str:
    """Train under a trace into the run's writer; returns the run's final status."""
    import tracer
    from tracer.distributed import unwrap

    status = "completed"
    who, stage = "", "before_run"
    try:
        with (
            stop_on_interrupt(ctx),
            tracer.trace(unwrap(model), sink=store.writer(run.id), **options) as t,
        ):
            ctx.bind(t)
            try:
                plugins.before_run(run, pipeline, config)
                stage = "train"
                final = pipeline.train(model, data, config, ctx)
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
        failed = _finish_failed(store, run, who, original)
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
    **options: Any,
) -> RunResult:
    """The Python face of ``tracer run``: ``run("sentiment", sets=["hidden_dim=256"])``.

    ``options`` are those of :func:`run_pipeline` (``name``, ``every``, ``ops``, ``grads``,
    ``device``, ``seed``, ``progress``, ``tags``).
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
    with open_store(db) as store:
        return run_pipeline(found, config, store=store, plugins=plugins, **options)
