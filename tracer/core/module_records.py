"""Static module records: the model's tree with parameter counts (tied parameters once)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from tracer.records import ModuleRecord, ParamRecord

_NAMED_PARAMETERS = nn.Module.named_parameters
_CHILDREN = nn.Module.children
_NAMED_CHILDREN = nn.Module.named_children


def module_records(
    model: nn.Module, named: list[tuple[str, nn.Module]] | None = None
) -> list[ModuleRecord]:
    """One :class:`ModuleRecord` per distinct module, in ``named_modules()`` order (``named``:
    that list, when the caller already has it).

    One pass reads each module's own parameters (its ``_parameters`` dict, as
    ``named_parameters(recurse=False, remove_duplicate=False)`` does, unless its class has its
    own ``named_parameters``); each module's totals then count its subtree's distinct
    parameters once."""
    if named is None:
        named = list(model.named_modules())
    facts: dict[int, Facts] = {}  # id(parameter) -> what its records need
    owners: dict[int, tuple[str, str]] = {}  # id(parameter) -> (path, name) of its first owner
    own_ids: dict[int, list[int]] = {}  # id(module) -> ids of its own parameters
    own: list[tuple[int, int, tuple[ParamRecord, ...]]] = []
    repeated = False  # a parameter registered twice (tied, or under two names)
    for path, module in named:
        if type(module).named_parameters is _NAMED_PARAMETERS:
            items: Iterable[tuple[str, Any]] = module._parameters.items()
        else:  # a class's own named_parameters decides what its parameters are
            items = module.named_parameters(recurse=False, remove_duplicate=False)
        count = trainable = 0
        params = []
        ids: list[int] = []
        for name, param in items:
            if param is None:
                continue
            key = id(param)
            ids.append(key)
            fact = facts.get(key)
            if fact is None:  # its first owner, where it is counted
                fact = facts[key] = _facts(param)
                owners[key] = (path, name)
                count += fact[0]
                trainable += fact[4]
                params.append(_param_record(name, fact, None))
            else:
                repeated = True
                first_path, first_name = owners[key]
                first = f"{first_path}.{first_name}" if first_path else first_name
                params.append(_param_record(name, fact, first))
        if ids:
            own_ids[id(module)] = ids
            own.append((count, trainable, tuple(params)))
        else:
            own.append(_NO_PARAMETERS)
    totals = None if repeated else _tree_totals(named, own)
    if totals is None:  # modules or parameters shared: count each distinct one once
        totals = _distinct_totals(named, own_ids, facts)
    records = []
    for (path, module), (count, trainable, own_params) in zip(named, own, strict=True):
        total, trainable_total = totals[id(module)]
        if path:
            dot = path.rfind(".")
            parent: str | None = path[:dot] if dot >= 0 else ""
            depth = path.count(".") + 1
        else:
            parent, depth = None, 0
        records.append(
            _module_record(
                path,
                type(module).__name__,
                parent,
                depth,
                count,
                total,
                trainable,
                trainable_total,
                _extra_repr(module),
                own_params,
            )
        )
    return records


_NO_PARAMETERS: tuple[int, int, tuple[ParamRecord, ...]] = (0, 0, ())


def _children(module: nn.Module) -> Iterable[nn.Module | None]:
    """``module.children()``, read from ``_modules`` (None entries included) unless its class
    has its own."""
    cls = type(module)
    if cls.children is _CHILDREN and cls.named_children is _NAMED_CHILDREN:
        return module._modules.values()
    return module.children()


def _tree_totals(
    named: list[tuple[str, nn.Module]], own: list[tuple[int, int, tuple[ParamRecord, ...]]]
) -> dict[int, tuple[int, int]] | None:
    """id(module) -> (parameters, trainable parameters) of its subtree, summed from its
    children's, or None unless the modules form a tree (every module but the root has one
    parent, listed once) in which no parameter is registered twice: then subtrees are
    disjoint and the sums count each parameter once."""
    totals: dict[int, tuple[int, int]] = {}
    edges = 0
    for (_, module), (count, trainable, _) in zip(reversed(named), reversed(own), strict=True):
        for child in _children(module):  # in a tree, each child comes after its parent
            if child is None:
                continue
            edges += 1
            below = totals.get(id(child))
            if below is None:
                return None
            count += below[0]
            trainable += below[1]
        totals[id(module)] = (count, trainable)
    return totals if edges == len(named) - 1 else None


def _distinct_totals(
    named: list[tuple[str, nn.Module]], own_ids: dict[int, list[int]], facts: dict[int, Facts]
) -> dict[int, tuple[int, int]]:
    """id(module) -> (parameters, trainable parameters) of its subtree, each distinct
    parameter counted once."""
    memo: dict[int, set[int]] = {}
    totals = {}
    for _, module in named:
        subtree = _subtree(module, own_ids, memo)
        totals[id(module)] = (
            sum(facts[key][0] for key in subtree),
            sum(facts[key][4] for key in subtree),
        )
    return totals


def _subtree(
    module: nn.Module, own_ids: dict[int, list[int]], memo: dict[int, set[int]]
) -> set[int]:
    """Ids of the distinct parameters in ``module``'s subtree, built once per module from its
    children's (counting each module's subtree by walking it again was quadratic in depth)."""
    ids = memo.get(id(module))
    if ids is None:
        ids = memo[id(module)] = set(own_ids.get(id(module), ()))  # set first: a cycle ends
        for child in _children(module):
            if child is not None:
                ids |= _subtree(child, own_ids, memo)
    return ids


def parent_path(path: str) -> str | None:
    """Qualified path of the parent module (``""`` for top-level children, None for the root)."""
    if path == "":
        return None
    return path.rsplit(".", 1)[0] if "." in path else ""


def module_depth(path: str) -> int:
    """Nesting depth of a module path: the root is 0, its children 1."""
    return 0 if path == "" else path.count(".") + 1


#: A parameter's facts, read once however many modules share it: element count,
#: requires_grad, shape, dtype name, and the element count again if it requires grad (else 0).
Facts = tuple[int, bool, tuple[int, ...], str, int]


def _facts(param: nn.Parameter) -> Facts:
    """Each attribute read once: on a Parameter every read goes through torch's subclass
    dispatch, and a model has thousands of them."""
    try:
        size = param.shape
        known = _SHAPES.get(size)
        if known is None:
            shape = tuple(map(int, size))
            known = (shape, math.prod(shape))
            if len(_SHAPES) < _SHAPES_LIMIT:
                _SHAPES[size] = known
        shape, numel = known
    except Exception:  # lazy modules' UninitializedParameter has no size yet
        shape, numel = (), _numel(param)
    dtype = param.dtype
    name = _DTYPES.get(dtype)
    if name is None:
        name = _DTYPES[dtype] = str(dtype).removeprefix("torch.")
    requires_grad = bool(param.requires_grad)
    return numel, requires_grad, shape, name, numel if requires_grad else 0


_DTYPES: dict[object, str] = {}
#: torch.Size -> (the shape as plain ints, element count): a model's layers share a few shapes.
_SHAPES: dict[tuple[int, ...], tuple[tuple[int, ...], int]] = {}
_SHAPES_LIMIT = 10_000


def _numel(param: nn.Parameter) -> int:
    try:
        return int(param.numel())
    except Exception:
        return 0


def _extra_repr(module: nn.Module) -> str:
    try:
        return str(module.extra_repr())
    except Exception:  # a user's extra_repr must not break tracing
        return ""


def _param_record(name: str, fact: Facts, shared_with: str | None) -> ParamRecord:
    """The record of one parameter: equal ones are shared (records are frozen), so a model
    of many alike layers builds each once."""
    key = (name, fact, shared_with)
    record = _PARAM_RECORDS.get(key)
    if record is None:
        numel, requires_grad, shape, dtype, _ = fact
        record = _new_param_record(name, shape, dtype, numel, requires_grad, shared_with)
        if len(_PARAM_RECORDS) < _PARAM_RECORDS_LIMIT:
            _PARAM_RECORDS[key] = record
    return record


_PARAM_RECORDS: dict[tuple[str, Facts, str | None], ParamRecord] = {}
_PARAM_RECORDS_LIMIT = 10_000


def _setters(cls: type, count: int) -> list[Callable[[Any, Any], None]]:
    """The slot setters of a record class's fields in order, or ``[]`` unless it has exactly
    ``count`` fields (the builders below are unrolled for that many)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return [cls.__dict__[n].__set__ for n in names] if len(names) == count else []


_new = object.__new__
_P = _setters(ParamRecord, 6)
_M = _setters(ModuleRecord, 10)


def _fast_param_record(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    numel: int,
    requires_grad: bool,
    shared_with: str | None,
    _p: list[Callable[[Any, Any], None]] = _P,
) -> ParamRecord:
    """``ParamRecord(...)`` through its slot setters: the frozen ``__init__`` is twice as slow."""
    obj = _new(ParamRecord)
    _p[0](obj, name), _p[1](obj, shape), _p[2](obj, dtype), _p[3](obj, numel)
    _p[4](obj, requires_grad), _p[5](obj, shared_with)
    return obj


def _fast_module_record(
    path: str,
    type_: str,
    parent: str | None,
    depth: int,
    params_own: int,
    params_total: int,
    trainable_own: int,
    trainable_total: int,
    extra_repr: str,
    parameters: tuple[ParamRecord, ...],
    _m: list[Callable[[Any, Any], None]] = _M,
) -> ModuleRecord:
    """``ModuleRecord(...)`` (all ten fields, positionally) through its slot setters."""
    obj = _new(ModuleRecord)
    _m[0](obj, path), _m[1](obj, type_), _m[2](obj, parent), _m[3](obj, depth)
    _m[4](obj, params_own), _m[5](obj, params_total), _m[6](obj, trainable_own)
    _m[7](obj, trainable_total), _m[8](obj, extra_repr), _m[9](obj, parameters)
    return obj


# A record class that gains (or loses) a field falls back to its own constructor.
_new_param_record: Callable[..., ParamRecord] = _fast_param_record if _P else ParamRecord
_module_record: Callable[..., ModuleRecord] = _fast_module_record if _M else ModuleRecord
