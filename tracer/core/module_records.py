"""Static module records: the model's tree with parameter counts (tied parameters once)."""

from __future__ import annotations

from torch import nn

from tracer.records import ModuleRecord, ParamRecord


def module_records(model: nn.Module) -> list[ModuleRecord]:
    """One :class:`ModuleRecord` per distinct module, in ``named_modules()`` order."""
    owners: dict[int, str] = {}  # id(parameter) -> qualified name of its first owner
    own: dict[str, tuple[int, int, tuple[ParamRecord, ...]]] = {}
    for path, module in model.named_modules():
        own[path] = _own_parameters(path, module, owners)
    records = []
    for path, module in model.named_modules():
        total, trainable = _subtree_counts(module)
        count, train_own, params = own[path]
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


def parent_path(path: str) -> str | None:
    """Qualified path of the parent module (``""`` for top-level children, None for the root)."""
    if path == "":
        return None
    return path.rsplit(".", 1)[0] if "." in path else ""


def module_depth(path: str) -> int:
    """Nesting depth of a module path: the root is 0, its children 1."""
    return 0 if path == "" else path.count(".") + 1


def _own_parameters(
    path: str, module: nn.Module, owners: dict[int, str]
) -> tuple[int, int, tuple[ParamRecord, ...]]:
    """Counts and records of the parameters registered directly on ``module``."""
    count = trainable = 0
    params = []
    for name, param in module.named_parameters(recurse=False, remove_duplicate=False):
        qualified = f"{path}.{name}" if path else name
        first = owners.setdefault(id(param), qualified)
        numel = _numel(param)
        if first == qualified:
            count += numel
            trainable += numel if param.requires_grad else 0
        params.append(
            ParamRecord(
                name=name,
                shape=_shape(param),
                dtype=str(param.dtype).removeprefix("torch."),
                numel=numel,
                requires_grad=param.requires_grad,
                shared_with=None if first == qualified else first,
            )
        )
    return count, trainable, tuple(params)


def _subtree_counts(module: nn.Module) -> tuple[int, int]:
    total = trainable = 0
    for param in module.parameters():  # parameters() already yields each tensor once
        numel = _numel(param)
        total += numel
        trainable += numel if param.requires_grad else 0
    return total, trainable


def _numel(param: nn.Parameter) -> int:
    try:
        return int(param.numel())
    except Exception:  # lazy modules' UninitializedParameter has no size yet
        return 0


def _shape(param: nn.Parameter) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in param.shape)
    except Exception:
        return ()


def _extra_repr(module: nn.Module) -> str:
    try:
        return str(module.extra_repr())
    except Exception:  # a user's extra_repr must not break tracing
        return ""
