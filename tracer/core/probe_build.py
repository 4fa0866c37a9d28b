"""The compiled tensor probe's build: the one description setup.py and the first-use build share,
the per-user cache it is built into, and a failed build remembered per torch version.

An install built without torch at build time (a plain, isolated ``pip install``) has no probe.
The first trace that would use it then builds it against the running torch, once, into
``$TRACER_PROBE_CACHE``, else ``$XDG_CACHE_HOME/layer-tracer/probe``, else
``~/.cache/layer-tracer/probe``, in a directory named after the torch version, the Python
version, the platform and a digest of the sources. ``TRACER_NO_PROBE_BUILD=1`` turns that off.

The compiler runs in a child process (its output is kept for the failure's reason, never shown
as it comes); a build goes into a temporary directory renamed into place, under a lock, so two
processes starting at once build it once and never see half a build. A failure is written
next to the builds with its reason, and no later process tries again for that torch until
``tracer doctor --build`` does.

setup.py loads this file by its path, before the package can be imported: only the standard
library at module level, torch and setuptools inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The compiled module's import name (its ``PyInit__probe`` fixes it).
MODULE = "tracer.core._probe"
#: The probe's sources, relative to the package's ``tracer/core`` folder; they ship with it.
SOURCE = "_probe.cpp"
HEADERS = ("stats_layout.h",)
CACHE_ENV = "TRACER_PROBE_CACHE"
NO_BUILD_ENV = "TRACER_NO_PROBE_BUILD"
#: The failure file's suffix beside a build's directory name.
FAILED = ".failed.json"
#: How the child process states its failure (the last line of its output).
_FAILED_PREFIX = "probe build failed: "
#: How long the build's compiler may run before it counts as failed.
BUILD_TIMEOUT_S = 600
HERE = Path(__file__).resolve().parent


def probe_extension(torch: Any, source_dir: str, *, optional: bool) -> Any:
    """The probe as a setuptools ``Extension`` against ``torch`` (the imported module), its
    sources under ``source_dir``; ``optional``: a failed compile is a warning, not an error."""
    from torch.utils.cpp_extension import CppExtension

    # CppExtension adds torch's include and library directories; the flags are the ones torch's
    # own BuildExtension would add to this one file (it would add them to the C kernel too).
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # OpenMP as torch's CPU builds use it: a big tensor's statistics are split over torch's own
    # threads (at::parallel_for; libgomp is the one torch already loaded).
    openmp = ["-fopenmp"] if sys.platform == "linux" else []
    return CppExtension(
        MODULE,
        [os.path.join(source_dir, SOURCE)],
        depends=[os.path.join(source_dir, h) for h in HEADERS],
        define_macros=[("TRACER_TORCH_VERSION", f'"{torch.__version__}"')],
        # -g0: no debug information for all of torch's headers (5.3 MB -> 0.2 MB)
        extra_compile_args=["-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-g0", *openmp],
        extra_link_args=openmp,
        optional=optional,
    )


def supported() -> bool:
    """Whether this platform builds the probe at all (setup.py skips it on Windows too)."""
    return sys.platform != "win32"


def build_disabled() -> bool:
    """Whether ``$TRACER_NO_PROBE_BUILD`` turns the first-use build off."""
    return os.environ.get(NO_BUILD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cache_root() -> Path:
    """``$TRACER_PROBE_CACHE``, else ``$XDG_CACHE_HOME/layer-tracer/probe``, else
    ``~/.cache/layer-tracer/probe``."""
    own = os.environ.get(CACHE_ENV)
    if own:
        return Path(own).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "layer-tracer" / "probe"


def sources_digest() -> str:
    """A digest of what a build compiles and how (the sources and this file's flags)."""
    digest = hashlib.sha256()
    for name in (SOURCE, *HEADERS, Path(__file__).name):
        with contextlib.suppress(OSError):
            digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:12]


def cache_key(torch_version: str) -> str:
    """The build's directory name: torch version, Python version, platform, sources."""
    parts = (f"torch-{torch_version}", sys.implementation.cache_tag, sysconfig.get_platform())
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(parts)) + "-" + sources_digest()


def module_file_name() -> str:
    """The compiled module's file name for this Python (``_probe.cpython-311-...so``)."""
    return "_probe" + str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def package_build() -> Path | None:
    """The probe built into the package at install time, if there is one."""
    path = HERE / module_file_name()
    return path if path.exists() else None


def sources_present() -> bool:
    """Whether the package ships the probe's sources (a build needs them)."""
    return all((HERE / name).is_file() for name in (SOURCE, *HEADERS))


@dataclass(frozen=True)
class CacheEntry:
    """One torch version's place in the cache: a build, or a remembered failure, or neither."""

    root: Path
    key: str

    @property
    def directory(self) -> Path:
        """The build's directory (created whole, by a rename)."""
        return self.root / self.key

    @property
    def module(self) -> Path:
        """The compiled module inside :attr:`directory`."""
        return self.directory / module_file_name()

    @property
    def failure_file(self) -> Path:
        """Where a failed build's reason is remembered."""
        return self.root / (self.key + FAILED)

    def built(self) -> Path | None:
        """The cached module, if a build finished."""
        return self.module if self.module.is_file() else None

    def failure(self) -> dict[str, Any] | None:
        """The remembered failure (``reason``, ``torch``, ``when``), if one is."""
        try:
            found = json.loads(self.failure_file.read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) and "reason" in found else None


def entry(torch_version: str, root: Path | None = None) -> CacheEntry:
    """The cache entry of ``torch_version`` under ``root`` (default :func:`cache_root`)."""
    return CacheEntry(root if root is not None else cache_root(), cache_key(torch_version))


def failure_text(entry: CacheEntry, failure: dict[str, Any]) -> str:
    """A remembered failure as the notes and ``tracer doctor`` say it."""
    when = str(failure.get("when", "earlier"))
    return (
        f"building it for torch {failure.get('torch', '?')} failed ({when}): {failure['reason']}; "
        f"remembered in {entry.failure_file}, `tracer doctor --build` tries again"
    )


# --- compilers --------------------------------------------------------------------------------


def compilers() -> list[tuple[str, str, str | None]]:
    """``(role, command, resolved path or None)`` of the programs a build runs: setuptools
    compiles with ``$CC`` (else Python's own) and links C++ with ``$CXX`` (likewise)."""
    found = []
    for role, var in (("compiles", "CC"), ("links", "CXX")):
        command = os.environ.get(var) or str(sysconfig.get_config_var(var) or "")
        words = shlex.split(command) if command else []
        program = words[0] if words else ""
        found.append((role, program or f"${var} unset", shutil.which(program) if program else None))
    return found


def missing_compiler() -> str | None:
    """Why no build can run here (a compiler not found), or None."""
    for role, program, path in compilers():
        if path is None:
            return f"no C++ compiler: {program} (which {role} the probe) is not found"
    return None


# --- building ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build` left: the module to load, or why there is none."""

    module: Path | None
    reason: str = ""
    seconds: float = 0.0
    #: Whether this process ran the compiler (else another one had built, or failed, already).
    built_here: bool = False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX); where locks are unavailable, the rename into
    place is what keeps the cache whole."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+b") as handle:
        with contextlib.suppress(OSError):  # a file system without locks
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def build(
    torch_version: str,
    *,
    root: Path | None = None,
    retry_failed: bool = False,
    announce: bool = True,
) -> BuildResult:
    """Build the probe for ``torch_version`` (the running torch) into the cache, unless a build
    or (without ``retry_failed``) a failure is already there; ``announce``: one line on
    stderr saying so, and how long it took."""
    place = entry(torch_version, root)
    try:
        place.root.mkdir(parents=True, exist_ok=True)
        with _locked(place.root / (place.key + ".lock")):
            return _build_locked(place, torch_version, retry_failed, announce)
    except OSError as exc:
        reason = f"the probe cache {place.root} is not writable ({exc.strerror or exc})"
        if announce:
            _say(f"tracer: could not build the compiled tensor probe: {reason}")
        return BuildResult(None, reason)


def _build_locked(
    place: CacheEntry, torch_version: str, retry_failed: bool, announce: bool
) -> BuildResult:
    """:func:`build` once the lock is held (another process may have finished meanwhile)."""
    if (done := place.built()) is not None:
        return BuildResult(done)
    failure = place.failure()
    if failure is not None and not retry_failed:
        return BuildResult(None, failure_text(place, failure))
    if announce:
        _say(
            f"tracer: building the compiled tensor probe for torch {torch_version}, once "
            "(about 30 s)...",
            end="",
        )
    started = time.perf_counter()
    reason = missing_compiler() or _compile_into(place)
    seconds = time.perf_counter() - started
    if reason:
        _remember_failure(place, torch_version, reason)
        if announce:
            _say(f" failed after {seconds:.1f} s ({reason}); using the Python probe")
        return BuildResult(None, failure_text(place, place.failure() or {"reason": reason}))
    with contextlib.suppress(OSError):
        place.failure_file.unlink()
    if announce:
        _say(f" done in {seconds:.1f} s, cached in {place.directory}")
    return BuildResult(place.module, seconds=seconds, built_here=True)


def _compile_into(place: CacheEntry) -> str:
    """Compile in a child process into a temporary directory, then rename it into place;
    the failure's reason, or ""."""
    work = Path(tempfile.mkdtemp(prefix=f".{place.key}.", dir=place.root))
    try:
        command = [sys.executable, str(Path(__file__).resolve()), str(work)]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return f"the compiler ran for more than {BUILD_TIMEOUT_S} s"
        built = work / "out" / module_file_name()
        if done.returncode != 0 or not built.is_file():
            return _why_failed(done.stdout + done.stderr, done.returncode)
        (work / "out" / "build.json").write_text(json.dumps(_provenance()))
        try:
            os.rename(work / "out", place.directory)
        except OSError:
            if place.built() is None:  # not another process's build (where locks do not work)
                raise
        return ""
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _why_failed(output: str, status: int) -> str:
    """The child's failure, with the compiler's first error line when it printed one."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    final = next((ln for ln in reversed(lines) if ln.startswith(_FAILED_PREFIX)), "")
    why = final.removeprefix(_FAILED_PREFIX) or f"the build exited with status {status}"
    compiler = next((ln for ln in lines if "error:" in ln and ln != final), "")
    if compiler and compiler not in why:
        why += f" ({compiler})"
    return why if len(why) <= 400 else why[:399] + "…"


def _remember_failure(place: CacheEntry, torch_version: str, reason: str) -> None:
    """Write the failure file atomically; a cache that cannot be written just forgets."""
    failure = {"torch": torch_version, "reason": reason, **_provenance()}
    with contextlib.suppress(OSError):
        fd, tmp = tempfile.mkstemp(prefix=".failed.", dir=place.root)
        with os.fdopen(fd, "w") as handle:
            json.dump(failure, handle)
        os.replace(tmp, place.failure_file)


def _provenance() -> dict[str, str]:
    """When and by which Python a build ran (written beside it)."""
    return {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "python": sys.version.split()[0]}


def _say(text: str, end: str = "\n") -> None:
    """Part of the build's one stderr line."""
    sys.stderr.write(text + end)
    sys.stderr.flush()


def _compile_main(out: Path) -> None:
    """The child process: compile the probe against the running torch into ``out/``."""
    import torch
    from setuptools import Distribution

    extension = probe_extension(torch, str(HERE), optional=False)
    dist = Distribution({"name": "layer-tracer-probe", "ext_modules": [extension]})
    command: Any = dist.get_command_obj("build_ext")
    command.build_lib = str(out / "lib")
    command.build_temp = str(out / "temp")
    command.ensure_finalized()
    command.run()
    built = Path(command.get_ext_fullpath(MODULE))
    (out / "out").mkdir()
    shutil.move(built, out / "out" / module_file_name())


def _short(exc: BaseException) -> str:
    """An exception in one short line: a failed command by its program, not its arguments."""
    seen: BaseException | None = exc
    while seen is not None:
        command = getattr(seen, "cmd", None)
        if isinstance(command, (list, tuple)) and command:
            status = getattr(seen, "returncode", "?")
            return f"command '{command[0]}' failed with exit code {status}"
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    # Run by its path: its folder (the core's modules) must not shadow what torch imports.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    try:
        _compile_main(Path(sys.argv[1]))
    except Exception as exc:  # the parent keeps this line as the failure's reason
        sys.stdout.flush()
        print(f"{_FAILED_PREFIX}{_short(exc)}", file=sys.stderr)
        sys.exit(1)
