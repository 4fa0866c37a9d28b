"""What the hooks' fast path asks of a plain tensor: its shared metadata, and whether it is the
output the previous call produced, unchanged.

Two implementations of one small interface (``meta``, ``chained``, ``remember``, ``forget``):

- ``tracer.core._probe.Probe`` (C++, ``tracer/core/_probe.cpp``) reads the answers from the C++
  tensor: no Python getters, no ``torch.Size`` or ``torch.device`` allocated, the metadata tuple
  found in a C++ table. It is built for one torch version: at install time when torch is
  importable then (``pip install --no-build-isolation``), else on first use (below).
- The compiled module also hands the statistics kernel (``tracer.core._speedups``) a plain CPU
  float tensor's address straight from the C++ tensor (:func:`compiled_float_stats`), and does
  a statistics collector's whole request for such a tensor in one call
  (:func:`compiled_stats_request`).
- :class:`PyProbe` asks torch's Python getters: the same answers, used when the compiled one is
  missing (the run's notes say so, with the reason).

Where the install has no probe for the running torch (a plain, isolated ``pip install``, or
torch upgraded since), the first trace that asks for it builds it once into a per-user cache
(:mod:`tracer.core.probe_build`) and loads it from there; later processes load the cached build
when this module is imported.

Neither holds a tensor: ``remember`` keeps a weak reference (Python's, or the C++ tensor's weak
count, which keeps its small header allocated but never its data).
"""

from __future__ import annotations

import importlib.util
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Protocol

import torch

from tracer.core import probe_build, torch_compat
from tracer.core.positions import REQUIRES_GRAD

_version = torch_compat.tensor_version


class _BuildOnFirstUse:
    """The compiled probe is not loaded yet: the first trace that asks builds it."""

    def __repr__(self) -> str:
        return "BUILD_ON_FIRST_USE"


BUILD_ON_FIRST_USE: Final = _BuildOnFirstUse()


def _load(path: Path) -> ModuleType:
    """Import the compiled probe built at ``path`` as ``tracer.core._probe``."""
    spec = importlib.util.spec_from_file_location(probe_build.MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[probe_build.MODULE] = module
    return module


def _from_cache() -> tuple[Any, Any, str, Path | None]:
    """Without a probe in the package: ``(Probe, float_stats, why missing, file)`` from the
    cache, or ``BUILD_ON_FIRST_USE`` (or None, and why) when there is no build there."""
    # A None in sys.modules is the import system's "this module is not there": honoured.
    if sys.modules.get(probe_build.MODULE, False) is None or not probe_build.supported():
        return None, None, torch_compat.PROBE_MISSING, None
    why = _not_in_package()
    place = probe_build.entry(torch.__version__)
    built = place.built()
    if built is not None:
        try:
            module = _load(built)
        except ImportError as exc:
            return None, None, f"{why}; the cached build {built} did not load ({exc})", None
        return module.Probe, module.float_stats, "", built
    failure = place.failure()
    if failure is not None:
        return None, None, f"{why}; {probe_build.failure_text(place, failure)}", None
    if probe_build.build_disabled():
        return None, None, why + _BUILD_OFF, None
    return BUILD_ON_FIRST_USE, None, why, None


_BUILD_OFF: Final = f"; ${probe_build.NO_BUILD_ENV} turns building it on first use off"


def _not_in_package() -> str:
    """Why the package's own probe did not load."""
    if probe_build.package_build() is None:
        return "not built at install"
    return torch_compat.PROBE_MISSING


# The compiled probe: the package's own, loaded by tracer.core.torch_compat (which documents the
# torch internals it reads), else the cached build; module attributes here so that tests can
# take the Python path.
if torch_compat.CompiledProbe is not None:
    PROBE_MISSING = ""
    _CompiledProbe: Any = torch_compat.CompiledProbe
    _float_stats: Any = torch_compat.compiled_float_stats
    _probe_file: Path | None = probe_build.package_build()
    _from: str = "package"
else:
    _CompiledProbe, _float_stats, PROBE_MISSING, _probe_file = _from_cache()
    _from = "cache" if _probe_file is not None else ""


def _compiled_cores() -> tuple[Any, Any, Any]:
    """``(WrapCore, RecorderCore, bind_wrapping)`` of the compiled module loaded at import, or
    three Nones (not loaded yet, or a build that predates them)."""
    if _CompiledProbe is None or _CompiledProbe is BUILD_ON_FIRST_USE:
        return None, None, None
    module = sys.modules.get(probe_build.MODULE)
    if module is None or getattr(module, "Probe", None) is not _CompiledProbe:
        return None, None, None
    cores = tuple(getattr(module, n, None) for n in ("WrapCore", "RecorderCore", "bind_wrapping"))
    return (None, None, None) if None in cores else cores  # type: ignore[return-value]


#: The compiled bases of the traced forward (tracer.core.wrapping.Wrap: calling it records the
#: common call in C++) and of the recorder (tracer.core.step_state.Recorder: the fields that
#: call reads), and the function that hands the compiled call its Python fallbacks. Decided
#: once, at import: None where the compiled probe was not loaded then (the Python classes are
#: used; a probe built on first use serves them through the Python fast path).
WrapCore, RecorderCore, bind_wrapping = _compiled_cores()
#: HookSet's wrappers made in C++ (``make_wraps``), where WrapCore is the compiled one.
make_wraps: Any = (
    None if WrapCore is None else getattr(sys.modules[probe_build.MODULE], "make_wraps", None)
)

#: PyProbe's remembered tensor: (weak reference, version, requires_grad, (metadata, index)).
_REF: Final = 0
_VERSION: Final = 1
_REQUIRES_GRAD: Final = 2
_PAIR: Final = 3


class TensorProbe(Protocol):
    """The interface both probes implement."""

    def meta(self, t: torch.Tensor, /) -> Any:
        """The shared metadata tuple of ``t`` as one output (``make(t)``, cached)."""

    def chained(self, t: torch.Tensor, /) -> tuple[Any, int | None] | None:
        """``(metadata, statistics index)`` if ``t`` is the remembered tensor, unchanged."""

    def remember(self, t: torch.Tensor, meta: Any, index: int | None, /) -> None:
        """Remember ``t`` (its identity, version and ``requires_grad``) with its record:
        ``meta`` is what :meth:`meta` just returned for ``t``, ``index`` its statistics."""

    def forget(self) -> None:
        """Remember nothing."""


class PyProbe:
    """The Python probe: torch's getters, a weak reference and the version counter."""

    __slots__ = ("_last", "meta")

    def __init__(self, make: Callable[[torch.Tensor], Any]) -> None:
        self.meta = make  # the Python way is the probe's meta itself
        # The remembered tensor, indexed by _REF ... _PAIR
        self._last: tuple[Any, int, bool, tuple[Any, int | None]] | None = None

    def chained(self, t: torch.Tensor) -> tuple[Any, int | None] | None:
        last = self._last
        if (
            last is not None
            and last[_REF]() is t
            and last[_VERSION] == _version(t)
            and last[_REQUIRES_GRAD] == t.requires_grad
        ):
            return last[_PAIR]
        return None

    def remember(self, t: torch.Tensor, meta: Any, index: int | None) -> None:
        try:
            # meta's requires_grad was read a moment ago by make(t)
            self._last = (weakref.ref(t), _version(t), meta[REQUIRES_GRAD], (meta, index))
        except RuntimeError:  # an inference tensor: no version counter to prove it unchanged
            self._last = None

    def forget(self) -> None:
        self._last = None


def new_probe(make: Callable[[torch.Tensor], Any]) -> TensorProbe:
    """The compiled probe when it was built for this torch, else :class:`PyProbe`."""
    if _CompiledProbe is BUILD_ON_FIRST_USE:
        _build_on_first_use()
    if _CompiledProbe is not None:
        probe: TensorProbe = _CompiledProbe(make)
        return probe
    return PyProbe(make)


def probe_available() -> bool:
    """Whether the compiled probe loaded (built first, if this is its first use)."""
    if _CompiledProbe is BUILD_ON_FIRST_USE:
        _build_on_first_use()
    return _CompiledProbe is not None


def probe_missing() -> str:
    """Why the compiled probe is not loaded ("" when it is), as the run's notes say it."""
    return PROBE_MISSING


def compiled_float_stats() -> Callable[[torch.Tensor], tuple[float, ...] | None] | None:
    """``tracer.core._probe.float_stats`` where the compiled probe loaded: the statistics kernel's
    tuple for a plain CPU float32/float64 tensor whose elements fill one block of memory (in
    any order), read through its C++ data pointer, big ones on torch's threads (None for any
    other tensor, and always None if ``tracer.core._speedups`` is missing)."""
    if _CompiledProbe is BUILD_ON_FIRST_USE:
        _build_on_first_use()
    return _float_stats if _CompiledProbe is not None else None


def compiled_stats_request() -> Callable[..., Any] | None:
    """``tracer.core._probe.StatsRequest`` where :func:`compiled_float_stats` is available (its
    conditions, its kernel): made with the collector's Python request and bound to its tables,
    its ``request`` does the common tensor's version, identity key, dedup and kernel vector in
    one call (see :class:`tracer.core.collector.StatsCollector`). None otherwise, or where the
    loaded build predates it."""
    return _from_loaded("StatsRequest")


def compiled_capture_pass() -> Callable[..., Any] | None:
    """``tracer.core._probe.capture_pass`` where the compiled probe loaded: the per-module loop
    of :func:`tracer.core.module_records.capture_modules`. None otherwise, or where the loaded
    build predates it."""
    return _from_loaded("capture_pass")


def _from_loaded(name: str) -> Callable[..., Any] | None:
    """``name`` of the compiled probe module in use (where :func:`compiled_float_stats` is
    available), or None."""
    if compiled_float_stats() is None:
        return None
    module = sys.modules.get(probe_build.MODULE)
    if module is None or getattr(module, "Probe", None) is not _CompiledProbe:
        return None
    found: Callable[..., Any] | None = getattr(module, name, None)
    return found


def _build_on_first_use() -> None:
    """Build the probe for the running torch into the cache (once: later processes find it
    there, or find the failure there) and load it; else say why once and keep PyProbe."""
    global PROBE_MISSING, _CompiledProbe
    _CompiledProbe = None  # decided once per process, whatever happens below
    if probe_build.build_disabled():
        PROBE_MISSING += _BUILD_OFF
    elif not probe_build.sources_present():
        PROBE_MISSING += "; this install has no sources to build it from"
    else:
        _take(probe_build.build(torch.__version__))


def _take(result: probe_build.BuildResult) -> None:
    """Load what a build left, or keep its reason."""
    global PROBE_MISSING, _CompiledProbe, _float_stats, _probe_file, _from
    if result.module is None:
        PROBE_MISSING = f"{_not_in_package()}; {result.reason}"
        return
    try:
        module = _load(result.module)
    except ImportError as exc:
        PROBE_MISSING = f"{_not_in_package()}; the build {result.module} did not load ({exc})"
        return
    PROBE_MISSING = ""
    _CompiledProbe, _float_stats = module.Probe, module.float_stats
    _probe_file, _from = result.module, "cache"


def build_now() -> probe_build.BuildResult | None:
    """Build the probe for the running torch now and load it (``tracer doctor --build``): a
    remembered failure is tried again; None when a probe is loaded already."""
    if _CompiledProbe is not None and _CompiledProbe is not BUILD_ON_FIRST_USE:
        return None
    if not probe_build.sources_present():
        return probe_build.BuildResult(None, "this install has no sources to build it from")
    result = probe_build.build(torch.__version__, retry_failed=True)
    _take(result)
    return result


@dataclass(frozen=True)
class ProbeStatus:
    """Where the compiled probe stands in this process, without building it."""

    #: "package" (built at install), "cache" (built on first use), "first use" (to be built
    #: by the first trace), or "" (not built: :attr:`reason` says why)
    source: str
    path: Path | None
    reason: str
    #: The package holds a build that refused this torch (made for another version).
    other_torch: bool


def probe_status() -> ProbeStatus:
    """Where the compiled probe stands (``tracer doctor``); never builds it."""
    pending = _CompiledProbe is BUILD_ON_FIRST_USE
    source = "first use" if pending else (_from if _CompiledProbe is not None else "")
    # _probe.cpp's refusal names the torch it was built against
    other = _from != "package" and "built against torch" in torch_compat.PROBE_MISSING
    return ProbeStatus(source, _probe_file if source else None, PROBE_MISSING, other)
