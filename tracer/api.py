"""``tracer.trace()``: the public entry point; resolves where records go, then opens a Trace."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tracer.core.stats import StatFn, default_extra_stats, validate_stat
from tracer.core.trace import Trace
from tracer.sink import Sink


def trace(
    model: nn.Module,
    *,
    sink: Sink | None = None,
    store: Any = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    pipeline: str | None = None,
    seed: int | None = None,
    tags: Mapping[str, str] | None = None,
    every: int = 1,
    stats: bool = True,
    ops: bool = False,
    grads: bool = False,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    extra_stats: Mapping[str, StatFn] | None = None,
) -> Trace:
    """Trace every module call of ``model``: ``with tracer.trace(model) as t: ...; t.step()``.

    Records go to ``sink`` (default: in memory, read back with ``t.calls`` / ``t.flow()``), or
    to a new run in ``store`` (a path, a SQLAlchemy URL, a ``Store``, or ``True`` for
    ``$TRACER_DB`` else ``./tracer.db``). ``every=N`` records steps 0, N, 2N, ...;
    ``include`` / ``exclude`` are ``fnmatch`` globs on module paths (the root's path is ``""``).
    ``ops`` adds functional reshapes as ``kind="op"`` calls, ``grads`` gradient statistics,
    ``extra_stats`` more statistics (added to those from :func:`tracer.register_stat`).
    """
    # Every argument is checked before a run is created: bad input never leaves a run behind.
    _check_model(model)
    if type(every) is not int or every != 1:  # the default needs no check
        _check_every(every)
    if type(stats) is not bool or type(ops) is not bool or type(grads) is not bool:
        for flag, value in (("stats", stats), ("ops", ops), ("grads", grads)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {value!r:.80}")
    include_list = None if include is None else _patterns(include, "include")
    exclude_list = None if exclude is None else _patterns(exclude, "exclude")
    extras = _merge_extras(extra_stats)
    if sink is not None and store is not None:
        raise ValueError("pass either sink= or store=, not both")
    if sink is not None and not isinstance(sink, Sink):
        raise TypeError(
            "sink must have begin, write_step, write_metrics and end methods "
            f"(a tracer.sink.Sink), got {type(sink).__name__}"
        )
    if name is None and config is None and pipeline is None and seed is None and tags is None:
        run_fields = _NO_RUN_FIELDS  # nothing to check
    else:  # checked with or without a store: a bad run field is an error either way
        run_fields = RunFields(name=name, config=config, pipeline=pipeline, seed=seed, tags=tags)
    session = Trace(
        model,
        sink=sink,
        every=every,
        stats=stats,
        ops=ops,
        grads=grads,
        include=include_list,
        exclude=exclude_list,
        extra_stats=extras,
    )
    if store is not None and store is not False:
        session.record_into(*_store_sink(store, model, run_fields))
    return session


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"tracer.trace() needs a torch.nn.Module, got {type(model).__name__}")


def _check_every(every: Any) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")


@dataclass(frozen=True)
class RunFields:
    """The run a store-backed trace creates: name, config, pipeline, seed and tags, checked."""

    name: str | None = None
    config: Mapping[str, Any] | None = None
    pipeline: str | None = None
    seed: int | None = None
    tags: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        for key, text in (("name", self.name), ("pipeline", self.pipeline)):
            if text is not None and not isinstance(text, str):
                raise TypeError(f"{key} must be a string, got {text!r:.80}")
        for key, mapping in (("config", self.config), ("tags", self.tags)):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise TypeError(f"{key} must be a mapping, got {type(mapping).__name__}")
        tags = self.tags or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise TypeError("tags must map strings to strings")
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an integer, got {seed!r:.80}")


_NO_RUN_FIELDS = RunFields()


def _patterns(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{what} must be a glob string or a list of them, got {type(value).__name__}"
        )
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} patterns must be strings, got {type(item).__name__}")
    return items


def _merge_extras(extra: Mapping[str, StatFn] | None) -> dict[str, StatFn]:
    merged = default_extra_stats()
    if extra is None:
        return merged
    if not isinstance(extra, Mapping):
        raise TypeError(
            f"extra_stats must map statistic names to functions, got {type(extra).__name__}"
        )
    for stat_name, fn in extra.items():
        try:
            validate_stat(stat_name, fn)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"extra_stats: {exc}") from None
        merged[stat_name] = fn
    return merged


def _store_sink(
    store: Any, model: nn.Module, fields: RunFields
) -> tuple[Sink, Any, Callable[[], None] | None]:
    """Open (or take) a store, create the run, and return its writer as the sink."""
    from tracer.store import Store, open_store  # lazy: only tracing into a store needs SQLAlchemy

    owned = not isinstance(store, Store)
    if store is True:
        store = open_store(None)  # the store reads $TRACER_DB, else ./tracer.db
    elif owned:
        if not isinstance(store, (str, os.PathLike)):
            raise TypeError(
                f"store= takes a path, a database URL, a Store or True, got {type(store).__name__}"
            )
        store = open_store(os.fspath(store))
    from tracer.distributed import run_fields as placement  # rank, world size, group id

    where = placement()  # empty for a single process
    run = store.create_run(
        name=fields.name or type(model).__name__,
        pipeline=fields.pipeline,
        config=fields.config,
        seed=fields.seed,
        tags=fields.tags,
        device=_model_device(model),
        torch_version=torch.__version__,
        rank=where.get("rank", 0),
        world_size=where.get("world_size", 1),
        group_id=where.get("group_id"),
    )
    close = getattr(store, "close", None) if owned else None
    return store.writer(run.id), run, close


def _model_device(model: nn.Module) -> str:
    for param in model.parameters():
        return str(param.device)
    for buffer in model.buffers():
        return str(buffer.device)
    return "cpu"
