"""Static module records: the model's tree with parameter counts (tied parameters once)."""

from __future__ import annotations

import math

from torch import nn

from tracer.records import ModuleRecord, ParamRecord


def module_records(
    model: nn.Module, named: list[tuple[str, nn.Module]] | None = None
) -> list[ModuleRecord]:
    """One :class:`ModuleRecord` per distinct module, in ``named_modules()`` order (``named``:
    that list, when the caller already has it)."""
    if named is None:
        named = list(model.named_modules())
    owners: dict[int, str] = {}  # id(parameter) -> qualified name of its first owner
    facts: dict[int, Facts] = {}  # id(parameter) -> what its records need
    own_ids: dict[int, list[int]] = {}  # id(module) -> ids of its own parameters
    own = [_own_parameters(path, module, owners, facts, own_ids) for path, module in named]
    subtrees: dict[int, set[int]] = {}
    records = []
    for (path, module), (count, train_own, params) in zip(named, own, strict=True):
        total = trainable = 0
        for key in _subtree(module, own_ids, subtrees):  # each distinct parameter once
            numel, requires_grad, _, _ = facts[key]
            total += numel
            trainable += numel if requires_grad else 0
        records.append(
            ModuleRecord(
                path=path,
                type=type(module).__name__,
                parent=parent_path(path),
                depth=module_depth(path),
                params_own=count,
                params_total=total,
                trainable_own=train_own,
                trainable_total=trainable,
                extra_repr=_extra_repr(module),
                parameters=params,
            )
        )
    return records


def _subtree(
    module: nn.Module, own_ids: dict[int, list[int]], memo: dict[int, set[int]]
) -> set[int]:
    """Ids of the distinct parameters in ``module``'s subtree, built once per module from its
    children's (counting each module's subtree by walking it again was quadratic in depth)."""
    ids = memo.get(id(module))
    if ids is None:
        ids = memo[id(module)] = set(own_ids.get(id(module), ()))  # set first: a cycle ends
        for child in module.children():
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
#: requires_grad, shape, dtype name.
Facts = tuple[int, bool, tuple[int, ...], str]


def _own_parameters(
    path: str,
    module: nn.Module,
    owners: dict[int, str],
    facts: dict[int, Facts],
    own_ids: dict[int, list[int]],
) -> tuple[int, int, tuple[ParamRecord, ...]]:
    """Counts and records of the parameters registered directly on ``module``."""
    count = trainable = 0
    params = []
    ids = own_ids[id(module)] = []
    for name, param in module.named_parameters(recurse=False, remove_duplicate=False):
        key = id(param)
        qualified = f"{path}.{name}" if path else name
        first = owners.setdefault(key, qualified)
        fact = facts.get(key)
        if fact is None:
            fact = facts[key] = _facts(param)
        numel, requires_grad, shape, dtype = fact
        ids.append(key)
        if first == qualified:
            count += numel
            trainable += numel if requires_grad else 0
        params.append(
            ParamRecord(
                name=name,
                shape=shape,
                dtype=dtype,
                numel=numel,
                requires_grad=requires_grad,
                shared_with=None if first == qualified else first,
            )
        )
    return count, trainable, tuple(params)


def _facts(param: nn.Parameter) -> Facts:
    """Each attribute read once: on a Parameter every read goes through torch's subclass
    dispatch, and a model has thousands of them."""
    try:
        shape = tuple(map(int, param.shape))
        numel = math.prod(shape)
    except Exception:  # lazy modules' UninitializedParameter has no size yet
        shape, numel = (), _numel(param)
    dtype = param.dtype
    name = _DTYPES.get(dtype)
    if name is None:
        name = _DTYPES[dtype] = str(dtype).removeprefix("torch.")
    return numel, bool(param.requires_grad), shape, name


_DTYPES: dict[object, str] = {}


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
