"""What plugins contribute: pipelines, tensor statistics, exporters, and the run context."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from tracer.store import Store


class PipelineError(Exception):
    """An error a pipeline reports to the user (missing data, a bad setting): shown as one line."""


@dataclass(frozen=True)
class Pipeline:
    """A trainable recipe: a typed config, ``data(config)``, ``model(config)`` and ``train``.

    ``config_cls`` is a dataclass whose every field has a default and a help text
    (``field(default=..., metadata={"help": "..."})``). ``model`` takes ``(config)``, or
    ``(config, data)`` when the model's size depends on the data (a vocabulary).
    ``train(model, data, config, ctx)``
    drives training and calls ``ctx.step()`` after each optimiser step; it may return final
    metrics (``{"test_acc": 0.8}``). ``plugin`` is filled in by the manager.
    """

    name: str
    description: str
    config_cls: type
    data: Callable[[Any], Any]
    model: Callable[..., Any]
    train: Callable[[Any, Any, Any, RunContext], Mapping[str, float] | None]
    plugin: str = ""


@dataclass(frozen=True)
class TensorStat:
    """An extra per-tensor statistic: ``fn(tensor) -> float`` stored under ``name``."""

    name: str
    fn: Callable[[Any], float]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Exporter:
    """A way to write one run to a file: ``export(store, run_id, path)``."""

    name: str
    description: str
    export: Callable[[Store, int, Path], None]
    suffix: str = ""
    plugin: str = ""


class Progress(Protocol):
    """The progress display a pipeline reports to (a rich bar in the CLI, silent in the API)."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def status(self, text: str) -> None: ...

    def print(self, text: str) -> None: ...


class SilentProgress:
    """A progress display that shows nothing (the Python API's default)."""

    def start(self, description: str, total: int | None) -> None:
        """Ignore the start of a phase."""

    def advance(self, n: int = 1) -> None:
        """Ignore progress."""

    def status(self, text: str) -> None:
        """Ignore a status line."""

    def print(self, text: str) -> None:
        """Ignore a message."""


class RunContext:
    """How a pipeline's ``train`` talks to the run: steps, metrics, progress, device, stop."""

    def __init__(
        self,
        trace: Any,
        *,
        device: torch.device,
        progress: Progress | None = None,
        on_step: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> None:
        self._trace = trace
        self.device = device
        self.progress: Progress = progress or SilentProgress()
        self.on_step = on_step
        self._pending: dict[str, float] = {}
        self.metrics: dict[str, float] = {}
        self.steps = 0
        self.stop_requested = False

    def bind(self, trace: Any) -> None:
        """Attach the open trace that ``step()`` and ``log()`` report to."""
        self._trace = trace

    @property
    def should_stop(self) -> bool:
        """True once the user asked to stop (first Ctrl-C): finish the step and return."""
        return self.stop_requested

    def request_stop(self) -> None:
        """Ask the pipeline to stop after its current step."""
        self.stop_requested = True

    def log(self, metrics: Mapping[str, float]) -> None:
        """Record scalar metrics at the current step (stored with the run)."""
        values = {k: float(v) for k, v in metrics.items()}
        self._pending.update(values)
        self.metrics.update(values)
        self._trace.log(values)

    def step(self, metrics: Mapping[str, float] | None = None) -> int:
        """Close the current training step (call after each optimiser step); returns its index."""
        if metrics:
            self.log(metrics)
        self._trace.step()
        done, self._pending = self._pending, {}
        if self.on_step is not None:
            self.on_step(self.steps, done)
        self.steps += 1
        return self.steps - 1

    @contextmanager
    def untraced(self) -> Iterator[None]:
        """Run a block (validation, testing) without recording it into the trace."""
        if self._trace is None:
            yield
            return
        with self._trace.paused():
            yield


def build_model(pipeline: Pipeline, config: Any, data: Any) -> Any:
    """Call ``pipeline.model`` with ``(config)`` or ``(config, data)``, whichever it takes."""
    try:
        params = inspect.signature(pipeline.model).parameters.values()
    except (TypeError, ValueError):  # builtins and C callables without a signature
        return pipeline.model(config)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    if len(positional) >= 2 or varargs:
        return pipeline.model(config, data)
    return pipeline.model(config)


def config_dict(config: Any) -> dict[str, Any]:
    """A pipeline config as plain JSON-friendly values (paths as strings)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out
