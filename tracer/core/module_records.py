"""Static module records: the model's tree with parameter counts (tied parameters once)."""

from __future__ import annotations

import dataclasses
import gc
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

from torch import nn

from tracer.core.probe import compiled_capture_pass
from tracer.records import ModuleRecord, ParamRecord

_NAMED_PARAMETERS = nn.Module.named_parameters
_PARAMETER = nn.Parameter
_CHILDREN = nn.Module.children
_NAMED_CHILDREN = nn.Module.named_children


def module_records(
    model: nn.Module, named: list[tuple[str, nn.Module]] | None = None
) -> list[ModuleRecord]:
    """One :class:`ModuleRecord` per distinct module, in ``named_modules()`` order (``named``:
    that list, when the caller already has it)."""
    return capture_modules(model, named).records()


def capture_modules(
    model: nn.Module, named: list[tuple[str, nn.Module]] | None = None
) -> ModuleRecords:
    """The model's module records as they are now, built when first read (see
    :class:`ModuleRecords`).

    One pass reads what may change later: each module's type, ``extra_repr()`` and own
    parameters (its ``_parameters`` dict, as ``named_parameters(recurse=False,
    remove_duplicate=False)`` does, unless its class has its own ``named_parameters``) with
    their shape, dtype and ``requires_grad``, and how many children it has. Where the modules
    form a tree, each module's totals are the sums of its children's, counted when the records
    are built (a parameter registered twice, as tied weights are, is then added once to the
    subtrees that hold only its later registrations); otherwise each distinct parameter of a
    subtree is counted once, now."""
    if named is None:
        named = list(model.named_modules())
    facts: dict[int, Facts] = {}  # id(parameter) -> what its records need
    compiled = compiled_capture_pass()
    if compiled is not None and type(named) is list:  # _capture_each, compiled
        paths, types, reprs, owns, kids, repeated, plain = compiled(named, facts, _CONTEXT)
    else:
        paths, types, reprs, owns, kids, repeated, plain = _capture_each(named, facts)
    # n modules with n - 1 child entries in all, each reachable from the root: a tree (no
    # module under two parents or twice under one, no None entry, no cycle).
    totals: list[tuple[int, int]] | bool = repeated  # True: the tree's totals need correcting
    if not plain or sum(kids) != len(named) - 1:
        totals = _distinct_totals(named, owns, facts)
    return ModuleRecords(paths, types, reprs, owns, kids, facts, totals)


class ModuleRecords(Sequence[ModuleRecord]):
    """The records of :func:`capture_modules`, built from what it read on first access.

    ``len()`` needs no records. Everything a record holds was read from the model at capture,
    so building later gives the records that building at once would have given."""

    __slots__ = ("_built", "_count", "_pending")

    #: Nothing changes it once captured: a sink may keep it rather than copy it (MemorySink).
    is_snapshot = True

    def __init__(
        self,
        paths: list[str],
        types: list[str],
        reprs: list[str | _Deferred],
        owns: list[list[Any] | None],
        kids: list[int],
        facts: dict[int, Facts],
        totals: list[tuple[int, int]] | bool,
    ) -> None:
        """``totals``: each module's (parameters, trainable parameters), counted at capture;
        else whether a parameter is registered twice in the tree (see :func:`_build`)."""
        self._count = len(paths)
        self._pending: tuple[Any, ...] | None = (paths, types, reprs, owns, kids, facts, totals)
        self._built: list[ModuleRecord] | None = None

    def records(self) -> list[ModuleRecord]:
        """The records as a list (built once, then shared)."""
        if self._built is None:
            assert self._pending is not None
            # Records are acyclic: a young collection would only promote them (a few dozen
            # modules allocate too little to set one off).
            collecting = self._count > 32 and gc.isenabled()
            if collecting:
                gc.disable()
            try:
                self._built = _build(*self._pending)
            finally:
                if collecting:
                    gc.enable()
            self._pending = None
        return self._built

    def counts(self) -> tuple[dict[str, int], tuple[int, int]]:
        """Each module's own parameter count by path (a parameter counted at its first owner
        only, as in the records) and the model's (parameters, trainable parameters), without
        building the records: what a summary table shows of them."""
        if self._built is not None:
            own = {r.path: r.params_own for r in self._built}
            root = self._built[0] if self._built else None
            return own, (root.params_total, root.trainable_total) if root else (0, 0)
        assert self._pending is not None
        paths, _, _, owns, _, facts, totals = self._pending
        seen: set[int] = set()
        own_counts: dict[str, int] = {}
        total = trainable = 0
        for path, own in zip(paths, owns, strict=True):
            count = 0
            if own is not None:
                for key in own[1::2]:
                    if key not in seen:
                        seen.add(key)
                        fact = facts[key]
                        count += fact[0]
                        trainable += fact[4]
            own_counts[path] = count
            total += count
        if isinstance(totals, list) and totals:  # counted at capture (modules not a tree)
            total, trainable = totals[0]
        return own_counts, (total, trainable)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> ModuleRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[ModuleRecord]: ...
    def __getitem__(self, index: int | slice) -> ModuleRecord | list[ModuleRecord]:
        return self.records()[index]

    def __iter__(self) -> Iterator[ModuleRecord]:
        return iter(self.records())

    def __repr__(self) -> str:
        return f"ModuleRecords(modules={len(self)})"


def _capture_each(named: Sequence[tuple[str, nn.Module]], facts: dict[int, Facts]) -> _Captured:
    """The per-module loop of :func:`capture_modules`, in Python. Compiled, as
    ``tracer.core._probe.capture_pass``, it takes the same branches; its parameters are read in
    C from a plain ``_parameters`` dict (of nn.Parameter or torch.Tensor), and it calls
    :func:`_repr_of`, :func:`_own_of` and :func:`_facts` wherever this loop does anything else."""
    paths: list[str] = []
    types: list[str] = []
    reprs: list[str | _Deferred] = []
    owns: list[list[Any] | None] = []  # each own parameter's name and id, in turn
    kids: list[int] = []  # entries in each module's _modules
    add_path, add_type, add_repr, add_own, add_kids = (
        paths.append,
        types.append,
        reprs.append,
        owns.append,
        kids.append,
    )
    repeated = False  # a parameter registered twice (tied, or under two names)
    plain = True  # every class lists its children as nn.Module does
    for path, module in named:
        cls = type(module)
        add_path(path)
        add_type(cls.__name__)
        state = module.__dict__
        if _deferred_get(cls) is cls.extra_repr and "extra_repr" not in state:
            add_repr(_Deferred(cls, _snapshot(state)))  # its text when the records are built
        elif cls.extra_repr is _NO_EXTRA_REPR and "extra_repr" not in state:
            add_repr("")
        else:
            add_repr(_repr_of(module))
        own, again = _own_of(module, facts)
        repeated = repeated or again
        add_own(own)
        if cls.children is not _CHILDREN or cls.named_children is not _NAMED_CHILDREN:
            plain = False
        add_kids(len(module._modules))
    return paths, types, reprs, owns, kids, repeated, plain


def _repr_of(module: nn.Module) -> str:
    """A module's ``extra_repr()`` asked now: ``""`` where it fails."""
    try:
        extra = module.extra_repr()
        return extra if type(extra) is str else str(extra)
    except Exception:  # a user's extra_repr must not break tracing
        return ""


def _own_of(module: nn.Module, facts: dict[int, Facts]) -> tuple[list[Any] | None, bool]:
    """A module's own parameters, each one's name and id in turn (or None), and whether one of
    them was in ``facts`` already; the facts of the others go into ``facts``. They are its
    ``_parameters`` table's (a TorchScript module's is no dict), unless its class has its own
    ``named_parameters``, which then decides."""
    cls = type(module)
    table = module._parameters if cls.named_parameters is _NAMED_PARAMETERS else None
    items: Iterable[tuple[str, Any]] = (
        table.items()
        if table is not None
        else module.named_parameters(recurse=False, remove_duplicate=False)
    )
    own: list[Any] | None = None
    repeated = False
    for name, param in items:
        if param is None:
            continue
        key = id(param)
        if key in facts:
            repeated = True
        else:
            facts[key] = _facts(param)
        if own is None:
            own = [name, key]
        else:
            own += name, key
    return own, repeated


_Captured = tuple[
    list[str], list[str], list["str | _Deferred"], list["list[Any] | None"], list[int], bool, bool
]


def _build(
    paths: list[str],
    types: list[str],
    reprs: list[str | _Deferred],
    owns: list[list[Any] | None],
    kids: list[int],
    facts: dict[int, Facts],
    totals: list[tuple[int, int]] | bool,
) -> list[ModuleRecord]:
    owners: dict[int, tuple[str, str]] = {}  # id(parameter) -> (path, name) of its first owner
    own_counts: list[tuple[int, int, tuple[ParamRecord, ...]]] = []
    for path, own in zip(paths, owns, strict=True):
        if own is None:
            own_counts.append(_NO_PARAMETERS)
            continue
        count = trainable = 0
        params = []
        for name, key in zip(own[::2], own[1::2], strict=True):  # each own parameter
            fact = facts[key]
            first = owners.get(key)
            if first is None:  # its first owner, where it is counted
                owners[key] = (path, name)
                count += fact[0]
                trainable += fact[4]
                params.append(_param_record(name, fact, None))
            else:
                first_path, first_name = first
                shared = f"{first_path}.{first_name}" if first_path else first_name
                params.append(_param_record(name, fact, shared))
        own_counts.append((count, trainable, tuple(params)))
    if not isinstance(totals, list):
        tree_totals = _tree_totals(own_counts, kids)
        if totals:  # a parameter registered twice: counted at its first owner only so far
            _add_repeated(tree_totals, owns, kids, facts)
        totals = tree_totals
    records = []
    for path, type_name, extra, (count, trainable, own_params), (total, trainable_total) in zip(
        paths, types, reprs, own_counts, totals, strict=True
    ):
        if path:
            dot = path.rfind(".")
            parent: str | None = path[:dot] if dot >= 0 else ""
            depth = path.count(".") + 1
        else:
            parent, depth = None, 0
        records.append(
            _module_record(
                path,
                type_name,
                parent,
                depth,
                count,
                total,
                trainable,
                trainable_total,
                extra if isinstance(extra, str) else extra.text(),
                own_params,
            )
        )
    return records


_NO_PARAMETERS: tuple[int, int, tuple[ParamRecord, ...]] = (0, 0, ())


def _tree_totals(
    own: list[tuple[int, int, tuple[ParamRecord, ...]]], kids: list[int]
) -> list[tuple[int, int]]:
    """(parameters, trainable parameters) of each module's subtree, for modules that form a
    tree listed in pre-order with ``kids`` children each: in reverse, a module's children's
    subtrees have each left their sum on the stack, the first child's on top."""
    totals: list[tuple[int, int]] = [(0, 0)] * len(own)
    stack: list[tuple[int, int]] = []
    for i in range(len(own) - 1, -1, -1):
        count, trainable, _ = own[i]
        for _ in range(kids[i]):
            below = stack.pop()
            count += below[0]
            trainable += below[1]
        totals[i] = subtotal = (count, trainable)
        stack.append(subtotal)
    return totals


def _add_repeated(
    totals: list[tuple[int, int]],
    owns: list[list[Any] | None],
    kids: list[int],
    facts: dict[int, Facts],
) -> None:
    """Correct a tree's summed totals for parameters registered more than once: a summed
    subtree counts such a parameter only where it holds the first registration (in pre-order),
    so each subtree that holds only later ones gets it added once. A later registration's chain
    of ancestors is walked up to the first module that already counts the parameter."""
    parent = _parents(kids)
    counted: dict[int, set[int]] = {}  # id(parameter) -> modules whose totals include it
    for i, own in enumerate(owns):
        if own is None:
            continue
        for key in own[1::2]:
            has = counted.get(key)
            if has is None:  # the first registration: its module and every ancestor count it
                has = counted[key] = set()
                j = i
                while j >= 0:
                    has.add(j)
                    j = parent[j]
                continue
            numel, trainable = facts[key][0], facts[key][4]
            j = i
            while j >= 0 and j not in has:
                has.add(j)
                count, train = totals[j]
                totals[j] = (count + numel, train + trainable)
                j = parent[j]


def _parents(kids: list[int]) -> list[int]:
    """Each module's parent index (-1 for the root) in a tree listed in pre-order with ``kids``
    children each."""
    parent = [-1] * len(kids)
    open_slots: list[list[int]] = []  # [index, children still to come] of the open modules
    for i, count in enumerate(kids):
        while open_slots and open_slots[-1][1] == 0:
            open_slots.pop()
        if open_slots:
            parent[i] = open_slots[-1][0]
            open_slots[-1][1] -= 1
        if count:
            open_slots.append([i, count])
    return parent


def _children(module: nn.Module) -> Iterable[nn.Module | None]:
    """``module.children()``, read from ``_modules`` (None entries included) unless its class
    has its own."""
    cls = type(module)
    if cls.children is _CHILDREN and cls.named_children is _NAMED_CHILDREN:
        return module._modules.values()
    return module.children()


def _distinct_totals(
    named: list[tuple[str, nn.Module]],
    owns: list[list[Any] | None],
    facts: dict[int, Facts],
) -> list[tuple[int, int]]:
    """(parameters, trainable parameters) of each module's subtree, each distinct parameter
    counted once."""
    own_ids = {
        id(module): own[1::2]
        for (_, module), own in zip(named, owns, strict=True)
        if own is not None
    }
    memo: dict[int, set[int]] = {}
    totals = []
    for _, module in named:
        subtree = _subtree(module, own_ids, memo)
        totals.append(
            (sum(facts[key][0] for key in subtree), sum(facts[key][4] for key in subtree))
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


def _plain_state(state: dict[str, Any]) -> dict[str, Any]:
    """What a deferred ``extra_repr()`` reads of a module: its attributes that are plain values
    (numbers, strings, None, tuples of ints; nothing else is kept, so the copy holds no tensor,
    module or hook of the model) and which of its parameters are set."""
    plain = {
        key: value
        for key, value in state.items()
        if type(value) in _PLAIN_VALUES
        or (type(value) is tuple and all(type(item) is int for item in value))
    }
    plain["_parameters"] = {
        name: None if param is None else True for name, param in state["_parameters"].items()
    }
    return plain


_PLAIN_VALUES = frozenset({int, float, bool, str, type(None)})

try:  # compiled (tracer/core/_speedups.c; absent from an older build of it)
    from tracer.core._speedups import plain_state as _compiled_plain_state
except ImportError:
    _compiled_plain_state = None
#: The one in use: 0.1 us a module compiled, 0.5-0.9 in Python.
_snapshot: Callable[[dict[str, Any]], dict[str, Any]] = _compiled_plain_state or _plain_state


class _Deferred:
    """The ``extra_repr()`` of a module of one of torch's own classes, written when the records
    are built from its plain attributes as they were at capture (see :func:`_plain_state`):
    that text is a function of those attributes alone. Copying them costs 0.1 us compiled
    (writing the text: a Conv2d's 2.9 us, a LayerNorm's 2.0, a Linear's 0.7), which a trace
    whose module records are never read then never pays."""

    __slots__ = ("cls", "state")

    def __init__(self, cls: type[nn.Module], state: dict[str, Any]) -> None:
        self.cls, self.state = cls, state

    def text(self) -> str:
        """The class's ``extra_repr()`` run on a bare instance holding the copied state."""
        module = object.__new__(self.cls)
        object.__setattr__(module, "__dict__", self.state)
        return _extra_repr(module)


_NO_EXTRA_REPR = nn.Module.extra_repr

#: Those whose text costs more than copying what it reads (0.5 us and more; the others are
#: asked at capture).
_DEFERRED_NAMES = (
    "Linear Bilinear Embedding Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d "
    "ConvTranspose3d BatchNorm1d BatchNorm2d BatchNorm3d LayerNorm GroupNorm RMSNorm MaxPool1d "
    "MaxPool2d MaxPool3d AvgPool1d"
)
#: torch.nn classes whose ``extra_repr()`` reads only their own attributes and whether a
#: parameter is set (checked against the direct call, configuration by configuration, in
#: tests/core/test_modules.py). Exact classes: a subclass may compute its text another way.
#: Each with its ``extra_repr`` as torch defines it: a class whose method was replaced since
#: (or a module with one of its own) is asked at capture, as any other.
DEFERRED_REPR: dict[type[nn.Module], Callable[..., str]] = {
    cls: cls.extra_repr
    for cls in [getattr(nn, name) for name in _DEFERRED_NAMES.split() if hasattr(nn, name)]
    + [nn.modules.linear.NonDynamicallyQuantizableLinear]
}


_deferred_get = DEFERRED_REPR.get


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


#: What the compiled capture pass needs besides the modules (tracer/core/_probe.cpp
#: ``CaptureContext``, in this order): what _capture_each reads from this module.
_CONTEXT = (
    _DTYPES,
    _PARAMETER,
    _facts,
    DEFERRED_REPR,
    _snapshot,
    _Deferred,
    _NO_EXTRA_REPR,
    _repr_of,
    _NAMED_PARAMETERS,
    _CHILDREN,
    _NAMED_CHILDREN,
    _own_of,
)
