"""``tracer.trace()``: the public entry point; resolves where records go, then opens a Trace."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tracer.session import Trace
from tracer.sink import Sink
from tracer.stats import StatFn, default_extra_stats, validate_stat


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
    _check_model(model)
    _check_every(every)
    include_list, exclude_list = _patterns(include, "include"), _patterns(exclude, "exclude")
    extras = _merge_extras(extra_stats)
    if sink is not None and store is not None:
        raise ValueError("pass either sink= or store=, not both")
    run, on_close = None, None
    if store is not None and store is not False:
        sink, run, on_close = _store_sink(
            store, model, name=name, config=config, pipeline=pipeline, seed=seed, tags=tags
        )
    return Trace(
        model,
        sink=sink,
        every=every,
        stats=stats,
        ops=ops,
        grads=grads,
        include=include_list,
        exclude=exclude_list,
        extra_stats=extras,
        run=run,
        on_close=on_close,
    )


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"tracer.trace() needs a torch.nn.Module, got {type(model).__name__}")


def _check_every(every: Any) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")


def _patterns(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} patterns must be strings, got {type(item).__name__}")
    return items


def _merge_extras(extra: Mapping[str, StatFn] | None) -> dict[str, StatFn]:
    merged = default_extra_stats()
    for stat_name, fn in (extra or {}).items():
        validate_stat(stat_name, fn)
        merged[stat_name] = fn
    return merged


def _store_sink(
    store: Any,
    model: nn.Module,
    **run_fields: Any,
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

    fields = {**dict(run_fields), **placement()}
    fields["name"] = fields["name"] or type(model).__name__
    run = store.create_run(**fields, device=_model_device(model), torch_version=torch.__version__)
    close = getattr(store, "close", None) if owned else None
    return store.writer(run.id), run, close


def _model_device(model: nn.Module) -> str:
    for param in model.parameters():
        return str(param.device)
    for buffer in model.buffers():
        return str(buffer.device)
    return "cpu"
