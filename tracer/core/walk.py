"""Nested-structure walker: turns a forward's arguments or result into ``(slot, leaf)`` pairs.

A leaf is a tensor or an object the walker does not understand (recorded by its type name).
Containers are opened: tuples and lists by position, mappings (dicts, ``OrderedDict``,
Hugging Face ``ModelOutput``) by key, namedtuples, dataclasses and ``PackedSequence`` by field
name. Plain scalars (None, numbers, strings, slices, dtypes, devices) carry no tensor data and
are skipped. The walker never raises: whatever it cannot open becomes an opaque leaf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
    if type(result) is _Tensor:  # the common case, kept out of the generic path
        return [("0", result)]
    leaves: list[Leaf] = []
    if type(result) in _SEQUENCES or (
        isinstance(result, (tuple, list)) and not _is_namedtuple(result)
    ):
        _into_sequence(result, leaves)
    else:
        _into(result, "", 0, leaves)  # a leaf at the top gets slot "0"
    return leaves


def walk_inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> list[Leaf]:
    """Leaves of a call's positional (``"0"``, ``"1.0"``) and keyword arguments (by name)."""
    if len(args) == 1 and type(args[0]) is _Tensor and not kwargs:
        return [("0", args[0])]
    leaves: list[Leaf] = []
    _into_sequence(args, leaves)
    if kwargs:
        add = leaves.append
        for key, value in kwargs.items():
            kind = type(value)
            if kind is _Tensor:
                add((str(key) or "0", value))
            elif kind not in _SKIPPED_EXACT:
                _into(value, str(key), 0, leaves)
    return leaves


# The walk appends to one list as it goes (no generator per level): a Hugging Face layer's
# call carries masks, caches and tuples of Nones, and walking them is most of what recording
# such a call costs.


def _into_sequence(values: tuple[Any, ...] | list[Any], out: list[Leaf]) -> None:
    """The leaves of the top-level items of a call's positional arguments or a returned tuple:
    each item's slot is its index, and a tensor item is a leaf at once."""
    add = out.append
    for index, value in enumerate(values):
        slot = _INDEX[index] if index < _INDEXED else str(index)
        kind = type(value)
        if kind is _Tensor:
            add((slot, value))
        elif kind not in _SKIPPED_EXACT:
            _into(value, slot, 1, out)


def _into(value: Any, slot: str, depth: int, out: list[Leaf]) -> None:
    """Append the leaves under ``value``; ``slot`` is its own path (``""`` at the top)."""
    kind = type(value)
    if kind is _Tensor or isinstance(value, _Tensor):
        out.append((slot or "0", value))
        return
    if kind in _SKIPPED_EXACT or isinstance(value, _SKIPPED):
        return
    if depth >= MAX_DEPTH:
        out.append((slot or "0", value))
        return
    if kind in _SEQUENCES:  # a plain tuple or list: its items by index
        depth += 1
        for index, child in enumerate(value):
            key = _INDEX[index] if index < _INDEXED else str(index)
            _into(child, f"{slot}.{key}" if slot else key, depth, out)
        return
    children = _children(value)
    if children is None:
        out.append((slot or "0", value))
        return
    depth += 1
    for key, child in children:
        _into(child, f"{slot}.{key}" if slot else key, depth, out)


def _children(value: Any) -> list[tuple[str, Any]] | None:
    """The named children of a container, or None when ``value`` is not one we can open."""
    kind = type(value)
    how = _KINDS.get(kind)
    if how is None:
        how = _kind(value)
        if len(_KINDS) < _KINDS_LIMIT:
            _KINDS[kind] = how
    if how is _OPAQUE:
        return None
    try:
        if how is _FIELDS:  # a namedtuple, PackedSequence included
            return [(name, getattr(value, name)) for name in value._fields]
        if how is _ITEMS:
            return [(str(i), v) for i, v in enumerate(value)]
        if how is _MAPPING:
            return [(str(k), v) for k, v in value.items()]
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    except Exception:  # a container with a broken accessor is recorded as an opaque leaf
        return None


def _kind(value: Any) -> str:
    """How a value of this type is opened: by its fields, by position, by key, as a
    dataclass, or not at all (decided once per type)."""
    try:
        if _is_namedtuple(value):
            return _FIELDS
        if isinstance(value, (tuple, list)):
            return _ITEMS
        if isinstance(value, Mapping):
            return _MAPPING
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return _DATACLASS
    except Exception:  # an odd type's checks failing: an opaque leaf
        return _OPAQUE
    return _OPAQUE


_FIELDS, _ITEMS, _MAPPING, _DATACLASS, _OPAQUE = "fields", "items", "mapping", "dataclass", "opaque"
#: Type -> how its values are opened; a type is what decides it (a namedtuple's fields, an ABC's
#: registration, a dataclass's decorator), so it is decided once. Bounded: types made on the fly
#: are forgotten past the limit (decided each time again).
_KINDS: dict[type, str] = {}
_KINDS_LIMIT = 4096


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


_Tensor = torch.Tensor
#: The skipped types themselves (a subclass, such as an IntEnum, is caught by isinstance).
_SKIPPED_EXACT = frozenset(_SKIPPED)
_SEQUENCES = frozenset({tuple, list})
#: Slot names of the first positions, made once.
_INDEXED = 64
_INDEX = [str(i) for i in range(_INDEXED)]
