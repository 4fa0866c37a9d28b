"""Nested-structure walker: turns a forward's arguments or result into ``(slot, leaf)`` pairs.

A leaf is a tensor or an object the walker does not understand (recorded by its type name).
Containers are opened: tuples and lists by position, mappings (dicts, ``OrderedDict``,
Hugging Face ``ModelOutput``) by key, namedtuples, dataclasses and ``PackedSequence`` by field
name. Plain scalars (None, numbers, strings, slices, dtypes, devices) carry no tensor data and
are skipped. The walker never raises: whatever it cannot open becomes an opaque leaf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch

#: Leaves with nothing to record: skipped silently.
_SKIPPED: tuple[type, ...] = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    slice,
    type(Ellipsis),
    torch.dtype,
    torch.device,
    torch.layout,
    torch.memory_format,
)

#: Deeper than this the structure is recorded as one opaque leaf (guards against cycles).
MAX_DEPTH = 16

Leaf = tuple[str, Any]


def walk_output(result: Any) -> list[Leaf]:
    """Leaves of a forward's result: a lone tensor or object is slot ``"0"``."""
    if type(result) is torch.Tensor:  # the common case, kept out of the generic path
        return [("0", result)]
    if isinstance(result, (tuple, list)) and not _is_namedtuple(result):
        return _collect_sequence(result, "")
    return list(_walk(result, "", 0))  # a leaf at the top gets slot "0"


def walk_inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> list[Leaf]:
    """Leaves of a call's positional (``"0"``, ``"1.0"``) and keyword arguments (by name)."""
    if len(args) == 1 and type(args[0]) is torch.Tensor and not kwargs:
        return [("0", args[0])]
    leaves = _collect_sequence(args, "")
    if kwargs:
        for key, value in kwargs.items():
            leaves.extend(_walk(value, str(key), 0))
    return leaves


def _collect_sequence(values: tuple[Any, ...] | list[Any], prefix: str) -> list[Leaf]:
    leaves: list[Leaf] = []
    for index, value in enumerate(values):
        slot = f"{prefix}.{index}" if prefix else str(index)
        if type(value) is torch.Tensor:
            leaves.append((slot, value))
        else:
            leaves.extend(_walk(value, slot, 1))
    return leaves


def _walk(value: Any, slot: str, depth: int) -> Iterator[Leaf]:
    """Yield the leaves under ``value``; ``slot`` is its own path (``""`` at the top)."""
    if isinstance(value, torch.Tensor):
        yield (slot or "0", value)
        return
    if isinstance(value, _SKIPPED):
        return
    children = _children(value) if depth < MAX_DEPTH else None
    if children is None:
        yield (slot or "0", value)
        return
    for key, child in children:
        yield from _walk(child, f"{slot}.{key}" if slot else key, depth + 1)


def _children(value: Any) -> list[tuple[str, Any]] | None:
    """The named children of a container, or None when ``value`` is not one we can open."""
    try:
        if _is_namedtuple(value):  # includes PackedSequence
            return [(name, getattr(value, name)) for name in value._fields]
        if isinstance(value, (tuple, list)):
            return [(str(i), v) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            return [(str(k), v) for k, v in value.items()]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    except Exception:  # a container with a broken accessor is recorded as an opaque leaf
        return None
    return None


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")
